// Message Markdown: raw HTML stays text, and only http(s) and mailto links become links.
import assert from "node:assert/strict";
import { test } from "node:test";

import MarkdownIt from "markdown-it";

import { createMarkdown, isSafeLink } from "../../static/js/markdown.js";

const md = createMarkdown(MarkdownIt);

test("HTML in a body is escaped, never passed through", () => {
  assert.equal(md.render("<img src=x onerror=alert(1)>"), "<p>&lt;img src=x onerror=alert(1)&gt;</p>");
  assert.equal(md.render("<script>alert(1)</script>"), "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>");
});

test("javascript:, data: and relative links are not links", () => {
  for (const body of ["[x](javascript:alert(1))", "[x](JAVASCRIPT:alert(1))", "[x](data:text/html,hi)", "[x](/admin)", "[x]( javascript:alert(1))"]) {
    assert.doesNotMatch(md.render(body), /<a /, body);
  }
  assert.doesNotMatch(md.render("javascript:alert(1)"), /<a /);
});

test("web and mail links open in a new tab without an opener", () => {
  assert.equal(
    md.render("see https://example.com/a?b=1"),
    '<p>see <a href="https://example.com/a?b=1" target="_blank" rel="noopener noreferrer">https://example.com/a?b=1</a></p>',
  );
  assert.match(md.render("[mail](mailto:a@example.com)"), /<a href="mailto:a@example.com" target="_blank" rel="noopener noreferrer">mail<\/a>/);
});

test("emphasis, code and line breaks; no images or headings", () => {
  assert.equal(md.render("**b** _e_ `c`"), "<p><strong>b</strong> <em>e</em> <code>c</code></p>");
  assert.equal(md.render("one\ntwo"), "<p>one<br>\ntwo</p>");
  assert.equal(md.render("# hi"), "<p># hi</p>");
  assert.doesNotMatch(md.render("![x](https://example.com/x.png)"), /<img/);
});

test("safe link check", () => {
  assert.equal(isSafeLink("https://x.y"), true);
  assert.equal(isSafeLink("mailto:a@b.c"), true);
  assert.equal(isSafeLink("javascript:alert(1)"), false);
  assert.equal(isSafeLink("//evil.example"), false);
});
