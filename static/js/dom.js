// DOM building blocks for the chat page: every piece of text goes in as text, never as HTML.

/**
 * Create an element. `attrs` may hold className, dataset, hidden, an `on` map of
 * event listeners, and plain attributes; children are nodes or strings (text).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "hidden") node.hidden = Boolean(value);
    else if (name === "on") {
      for (const [event, listener] of Object.entries(value)) node.addEventListener(event, listener);
    } else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A <time> in the reader's own time zone: the time today, date and time otherwise. */
export function timeElement(iso) {
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return el("time", {}, "");
  const today = moment.toDateString() === new Date().toDateString();
  const short = today
    ? moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : moment.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  const full = moment.toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
  return el("time", { datetime: iso, title: full }, short);
}

/** A random UUID, also on plain-http origins where crypto.randomUUID is not offered. */
export function newClientId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// What Markdown may leave in a message body; anything else becomes its text.
const ALLOWED_TAGS = new Set(["P", "BR", "STRONG", "EM", "S", "DEL", "CODE", "PRE", "BLOCKQUOTE", "UL", "OL", "LI", "A"]);
const SAFE_HREF = /^(https?:\/\/|mailto:)/i;

/**
 * Turn the HTML a Markdown renderer produced into nodes, keeping only the allowed tags and,
 * on links, only an http(s)/mailto `href` (with target and rel forced). Parsed in an inert
 * <template>, so nothing in it loads or runs.
 */
export function safeFragment(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  const fragment = document.createDocumentFragment();
  for (const child of [...template.content.childNodes]) fragment.append(...cleanNode(child));
  return fragment;
}

function cleanNode(node) {
  if (node.nodeType === Node.TEXT_NODE) return [document.createTextNode(node.data)];
  if (node.nodeType !== Node.ELEMENT_NODE) return [];
  const children = [...node.childNodes].flatMap(cleanNode);
  if (!ALLOWED_TAGS.has(node.tagName)) return [document.createTextNode(node.textContent)];
  const copy = document.createElement(node.tagName.toLowerCase());
  if (node.tagName === "A") {
    const href = node.getAttribute("href") || "";
    if (!SAFE_HREF.test(href.trim())) return children;
    copy.setAttribute("href", href);
    copy.setAttribute("target", "_blank");
    copy.setAttribute("rel", "noopener noreferrer");
  }
  if (node.tagName === "OL" && /^\d{1,9}$/.test(node.getAttribute("start") || "")) {
    copy.setAttribute("start", node.getAttribute("start"));
  }
  copy.append(...children);
  return [copy];
}

/**
 * Wrap `@name` mentions in the text of `root` (outside code and links) in <span class="mention">,
 * using `split(text)` from timeline.splitMentions; `isMe(name)` marks the reader's own.
 */
export function markMentions(root, split, isMe) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (text) =>
      text.parentElement?.closest("code, pre, a") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode);
  for (const text of texts) {
    const parts = split(text.data);
    if (!parts.some((part) => part.mention)) continue;
    text.replaceWith(
      ...parts.map((part) =>
        part.mention
          ? el("span", { className: isMe(part.mention) ? "mention mention-me" : "mention" }, part.text)
          : document.createTextNode(part.text),
      ),
    );
  }
}

/** A day label for a message's local date: Today, Yesterday, or the date. */
export function isoToDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}
