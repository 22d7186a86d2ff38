// Message search in the page header: `/` focuses it, results come grouped by conversation with the
// words of the query highlighted (as text nodes in <mark>, never as HTML), and a click opens the
// conversation of the result.

import { el, timeElement } from "./dom.js";

const WORD = /[\p{L}\p{N}]+/gu;
const DEBOUNCE_MS = 250;

/** The query's words, lower-cased, as the server splits them. */
export function queryWords(query) {
  return [...new Set((query.normalize("NFC").toLowerCase().match(WORD) || []))];
}

/** ``text`` as nodes, with every whole word of ``words`` in a <mark>. */
export function highlighted(text, words) {
  const wanted = new Set(words);
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(WORD)) {
    if (!wanted.has(match[0].normalize("NFC").toLowerCase())) continue;
    if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
    nodes.push(el("mark", {}, match[0]));
    last = match.index + match[0].length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

function conversationLabel(message, me) {
  if (message.room) return `#${message.room}`;
  const other = message.sender.id === me.id ? message.recipient : message.sender;
  return `@${other.username}`;
}

/**
 * Mount the search box into ``container`` (the page header).
 *
 * ``call(event, payload)`` emits with an acknowledgement; ``open(message)`` opens the
 * conversation a result belongs to; ``me`` is the signed-in USER.
 */
export function mountSearch({ container, call, open, me }) {
  const input = el("input", {
    type: "search",
    id: "message-search",
    autocomplete: "off",
    spellcheck: "false",
    maxlength: 200,
    placeholder: "Search messages (/)",
    "aria-label": "Search messages",
    "aria-controls": "search-results",
  });
  const status = el("p", { className: "hint search-status", role: "status" });
  const results = el("div", { id: "search-results", className: "search-results", hidden: true });
  const form = el("form", { className: "search-form", role: "search" }, input, results);
  results.append(status);
  container.append(form);

  let timer = null;
  let asked = 0;

  function close() {
    results.hidden = true;
  }

  async function run() {
    const query = input.value.trim();
    const ticket = ++asked;
    if (!query) {
      close();
      return;
    }
    if (!queryWords(query).length) {
      show([], query, "Type a word to search for.");
      return;
    }
    let ack;
    try {
      ack = await call("search", { q: query, limit: 50 });
    } catch {
      ack = { ok: false, error: { message: "The server did not answer." } };
    }
    if (ticket !== asked) return; // a newer query is on its way
    if (!ack.ok) show([], query, ack.error?.message || "Search failed.");
    else show(ack.messages, query, ack.messages.length ? "" : "No messages found.");
  }

  function show(messages, query, note) {
    const words = queryWords(query);
    const groups = new Map();
    for (const message of messages) {
      const label = conversationLabel(message, me);
      if (!groups.has(label)) groups.set(label, []);
      groups.get(label).push(message);
    }
    status.textContent = note || `${messages.length} result${messages.length === 1 ? "" : "s"}`;
    results.replaceChildren(
      status,
      ...[...groups].map(([label, found]) =>
        el(
          "section",
          { className: "search-group", "aria-label": label },
          el("h2", {}, label),
          el(
            "ul",
            {},
            found.map((message) =>
              el(
                "li",
                {},
                el(
                  "button",
                  {
                    type: "button",
                    className: "search-result",
                    on: {
                      click: () => {
                        close();
                        open(message);
                      },
                    },
                  },
                  el("span", { className: "sender" }, message.sender.username),
                  " ",
                  timeElement(message.created_at),
                  el("span", { className: "search-body" }, ...highlighted(message.body, words)),
                ),
              ),
            ),
          ),
        ),
      ),
    );
    results.hidden = false;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    run();
  });
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(run, DEBOUNCE_MS);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      close();
      input.blur();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      return;
    }
    event.preventDefault();
    input.focus();
    input.select();
  });
  return { input, results };
}
