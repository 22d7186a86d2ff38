// Message bodies are plain text; this turns them into a small, safe subset of Markdown.
// Raw HTML is never let through (`html: false`), and only http(s) and mailto links become links.

const SAFE_LINK = /^(https?:\/\/|mailto:)/i;

/** Whether `url` may be the target of a link in a message. */
export function isSafeLink(url) {
  return typeof url === "string" && SAFE_LINK.test(url.trim());
}

/**
 * A renderer built on the MarkdownIt class given (the browser passes the vendored copy, tests
 * pass the npm package). `render(body)` answers an HTML string with nothing but the tags
 * Markdown makes; callers still pass it through `dom.safeFragment`.
 */
export function createMarkdown(MarkdownIt) {
  const md = new MarkdownIt("default", { html: false, linkify: true, breaks: true, typographer: false });
  // Chat text: no remote images, no page-sized headings, no tables to break the layout.
  md.disable(["image", "heading", "lheading", "table", "hr"]);
  md.validateLink = isSafeLink;
  const defaultLinkOpen =
    md.renderer.rules.link_open || ((tokens, idx, options, _env, self) => self.renderToken(tokens, idx, options));
  md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
    tokens[idx].attrSet("target", "_blank");
    tokens[idx].attrSet("rel", "noopener noreferrer");
    return defaultLinkOpen(tokens, idx, options, env, self);
  };
  return {
    render(body) {
      return md.render(String(body ?? "")).trim();
    },
  };
}
