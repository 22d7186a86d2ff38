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
