// The message list of the open conversation: confirmed messages in id order, then the outbox's.
// Bodies are Markdown rendered by markdown-it and cleaned by dom.safeFragment; every other
// piece of user text goes in as text.
import { renderAttachments } from "./attachments.js";
import { el, markMentions, safeFragment, timeElement } from "./dom.js";
import { continuesGroup, dayLabel, sameDay, secondsLeft, splitMentions } from "./timeline.js";

// Within this distance of the bottom the list follows new messages; further up it stays put.
const STICK_TO_BOTTOM_PX = 80;
const SNIPPET_CHARS = 80;
const HIGHLIGHT_MS = 2500;

export function snippet(message) {
  if (!message) return "an earlier message";
  if (message.deleted) return "a deleted message";
  const text = message.body.replace(/\s+/g, " ").trim();
  if (!text && message.attachments?.length) return `📎 ${message.attachments[0].name}`;
  return text.length > SNIPPET_CHARS ? `${text.slice(0, SNIPPET_CHARS)}…` : text;
}

export class MessageList {
  constructor({ scroller, list, newBelow, jumpUnread, me, markdown, actions }) {
    this.scroller = scroller;
    this.list = list;
    this.newBelow = newBelow;
    this.jumpUnread = jumpUnread; // shown while the "New messages" line is above the view
    this.me = me;
    this.markdown = markdown;
    // Callbacks: retry, editFailed, reply, edit, remove, react, pickReaction, jump, saveEdit,
    // canDelete, lookup (a message by id from the open conversation).
    this.actions = actions;
    this.items = new Map(); // message id -> <li>
    this.messages = new Map(); // message id -> MESSAGE shown
    this.pending = new Map(); // client_id -> <li>
    this.firstUnreadId = null;
    this.editing = null; // {id, node} while a message is being edited in place
    this.refreshQueued = false;
    this.olderButton = null;
    this.olderNote = null;
    scroller.addEventListener("scroll", () => {
      if (this.isNearBottom()) this.newBelow.hidden = true;
      this.updateJumpUnread();
    });
    // The newest message stays in view when the window (or the phone's keyboard) shrinks the list.
    if (typeof ResizeObserver === "function") {
      let wasNearBottom = true;
      scroller.addEventListener("scroll", () => (wasNearBottom = this.isNearBottom()), { passive: true });
      new ResizeObserver(() => {
        if (wasNearBottom) this.scrollToBottom();
      }).observe(scroller);
    }
  }

  /** Replace everything with one conversation's messages and outbox entries. */
  show(messages, entries, { firstUnreadId = null } = {}) {
    this.items.clear();
    this.messages.clear();
    this.pending.clear();
    this.editing = null;
    this.firstUnreadId = firstUnreadId;
    this.list.replaceChildren();
    this.newBelow.hidden = true;
    for (const message of messages) this.upsert(message, { follow: false, quiet: true });
    for (const entry of entries) this.addPending(entry, { follow: false });
    this.refresh();
    this.scrollToBottom();
    if (firstUnreadId !== null) this.revealFirstUnread(firstUnreadId);
  }

  /** Draw the "New messages" line above message `id` and bring it into view if it is above. */
  revealFirstUnread(id) {
    this.firstUnreadId = id;
    this.refresh();
    const node = this.items.get(id);
    // The list opens at the bottom; when the first unread message is above the view, start there.
    if (node && node.offsetTop < this.scroller.scrollTop) {
      this.scroller.scrollTop = node.offsetTop - this.scroller.clientHeight / 4;
    }
  }

  /** Scroll the "New messages" line back into view (the jump-to-unread control). */
  showFirstUnread() {
    const node = this.firstUnreadId === null ? null : this.items.get(this.firstUnreadId);
    if (node) this.scroller.scrollTop = node.offsetTop - this.scroller.clientHeight / 4;
    this.updateJumpUnread();
  }

  updateJumpUnread() {
    if (!this.jumpUnread) return;
    const node = this.firstUnreadId === null ? null : this.items.get(this.firstUnreadId);
    this.jumpUnread.hidden = !node || node.offsetTop + node.offsetHeight > this.scroller.scrollTop;
  }

  isNearBottom() {
    const { scrollTop, scrollHeight, clientHeight } = this.scroller;
    return scrollHeight - scrollTop - clientHeight <= STICK_TO_BOTTOM_PX;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.newBelow.hidden = true;
  }

  /** Insert or redraw a confirmed message at its place by id. */
  upsert(message, { follow = true, quiet = false, fromOthers = false } = {}) {
    const stick = follow && this.isNearBottom();
    const existing = this.items.get(message.id);
    this.messages.set(message.id, message);
    if (this.editing?.id === message.id) {
      // The editor stays open; the newest copy is drawn when it closes.
      return;
    }
    const node = this.renderMessage(message);
    if (existing) {
      existing.replaceWith(node);
    } else {
      this.list.insertBefore(node, this.nodeAfter(message.id));
    }
    this.items.set(message.id, node);
    if (!quiet) this.queueRefresh();
    if (stick) this.scrollToBottom();
    else if (!existing && follow && fromOthers) this.newBelow.hidden = false;
  }

  /** Add older messages above the others without moving what the reader is looking at. */
  prependOlder(messages) {
    // The message that was first stays where it was on screen, even though it may lose its
    // day divider or its author line to the messages above it.
    const anchor = this.list.querySelector(":scope > li[data-id]");
    const offset = anchor ? anchor.offsetTop - this.scroller.scrollTop : 0;
    for (const message of messages) this.upsert(message, { follow: false, quiet: true });
    this.refresh();
    if (anchor) this.scroller.scrollTop = anchor.offsetTop - offset;
  }

  /** The first node that belongs after message `id`: a higher confirmed id or the first pending entry. */
  nodeAfter(id) {
    let after = null;
    for (let node = this.list.lastElementChild; node; node = node.previousElementSibling) {
      if (node.dataset.id === undefined || Number(node.dataset.id) > id) after = node;
      else break;
    }
    return after;
  }

  addPending(entry, { follow = true } = {}) {
    const stick = follow && this.isNearBottom();
    const node = this.renderPending(entry);
    const existing = this.pending.get(entry.client_id);
    if (existing) existing.replaceWith(node);
    else this.list.append(node);
    this.pending.set(entry.client_id, node);
    if (stick) this.scrollToBottom();
  }

  removePending(clientId) {
    this.pending.get(clientId)?.remove();
    this.pending.delete(clientId);
  }

  /** Update the "wait N s" countdowns of rate-limited entries. */
  tickCountdowns(now = Date.now()) {
    for (const node of this.pending.values()) {
      const countdown = node.querySelector(".countdown");
      if (countdown) countdown.textContent = `${secondsLeft(Number(countdown.dataset.until), now)} s`;
    }
  }

  /** The slot above the messages: a button while older pages exist, a note at the beginning. */
  setOlderState({ loaded, loading, hasMore, title, olderButton, olderNote }) {
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    olderButton.hidden = !(loaded && hasMore);
    olderButton.disabled = Boolean(loading);
    olderButton.textContent = loading ? "Loading older messages…" : "Load older messages";
    olderNote.hidden = loaded ? hasMore : !loading;
    olderNote.textContent = loaded ? `This is the beginning of ${title}.` : "Loading messages…";
    // Whatever changed above the messages must not move them.
    this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
  }

  /** Scroll to a message and flash it; false when it is not in the list. */
  highlight(id) {
    const node = this.items.get(id);
    if (!node) return false;
    node.scrollIntoView({ block: "center" });
    node.classList.remove("highlight");
    void node.offsetWidth; // restart the animation when the same message is picked twice
    node.classList.add("highlight");
    setTimeout(() => node.classList.remove("highlight"), HIGHLIGHT_MS);
    return true;
  }

  lastOwnMessage() {
    let last = null;
    for (const message of this.messages.values()) {
      if (message.sender.id === this.me.id && !message.deleted && (!last || message.id > last.id)) last = message;
    }
    return last;
  }

  queueRefresh() {
    if (this.refreshQueued) return;
    this.refreshQueued = true;
    queueMicrotask(() => {
      this.refreshQueued = false;
      this.refresh();
    });
  }

  /** Day dividers, the "New messages" line and grouping by author, recomputed over the list. */
  refresh() {
    const now = new Date();
    let previous = null;
    for (const node of this.list.children) {
      if (node.dataset.id === undefined) continue;
      const message = this.messages.get(Number(node.dataset.id));
      if (!message) continue;
      const date = new Date(message.created_at);
      const newDay = !previous || !sameDay(new Date(previous.created_at), date);
      setDivider(node, "day-divider", newDay && !Number.isNaN(date.getTime()) ? dayLabel(date, now) : null);
      const unreadLine = message.id === this.firstUnreadId;
      setDivider(node, "new-divider", unreadLine ? "New messages" : null);
      node.classList.toggle("grouped", !newDay && !unreadLine && continuesGroup(previous, message));
      previous = message;
    }
    this.updateJumpUnread();
  }

  renderMessage(message) {
    const own = message.sender.id === this.me.id;
    const mentionsMe = (message.mentions || []).some((name) => name.toLowerCase() === this.me.username.toLowerCase());
    const classes = ["message"];
    if (own) classes.push("own");
    if (message.deleted) classes.push("deleted");
    if (mentionsMe && !message.deleted) classes.push("mentions-me");
    const node = el("li", {
      className: classes.join(" "),
      dataset: { id: String(message.id), status: "sent", rev: String(message.rev ?? 0) },
    });
    if (message.reply_to) node.append(this.renderQuote(message.reply_to));
    node.append(
      el(
        "div",
        { className: "meta" },
        el("span", { className: "sender" }, message.sender.username),
        " ",
        timeElement(message.created_at),
        message.edited_at && !message.deleted
          ? el("span", { className: "edited", title: `Edited ${new Date(message.edited_at).toLocaleString()}` }, "(edited)")
          : null,
      ),
      this.renderBody(message),
    );
    if (!message.deleted && message.attachments?.length) node.append(renderAttachments(message.attachments));
    if (!message.deleted && message.reactions?.length) node.append(this.renderReactions(message));
    if (!message.deleted) node.append(this.renderActions(message, own));
    return node;
  }

  renderBody(message) {
    if (message.deleted) return el("div", { className: "body" }, "This message was deleted.");
    const body = el("div", { className: "body" });
    body.append(safeFragment(this.markdown.render(message.body)));
    const names = message.mentions || [];
    if (names.length) {
      const me = this.me.username.toLowerCase();
      markMentions(
        body,
        (text) => splitMentions(text, names),
        (name) => name.toLowerCase() === me,
      );
    }
    return body;
  }

  renderQuote(replyTo) {
    const original = this.actions.lookup(replyTo);
    return el(
      "button",
      {
        type: "button",
        className: "reply-quote",
        dataset: { replyTo: String(replyTo) },
        on: { click: () => this.actions.jump(replyTo) },
      },
      el("span", { className: "visually-hidden" }, "In reply to "),
      el("span", { className: "reply-sender" }, original ? original.sender.username : ""),
      " ",
      el("span", { className: "snippet" }, snippet(original)),
    );
  }

  renderReactions(message) {
    const me = this.me.username.toLowerCase();
    return el(
      "div",
      { className: "reactions" },
      message.reactions.map((reaction) => {
        const mine = reaction.users.some((name) => name.toLowerCase() === me);
        return el(
          "button",
          {
            type: "button",
            className: "reaction",
            "aria-pressed": String(mine),
            title: reaction.users.join(", "),
            on: { click: () => this.actions.react(message, reaction.emoji, !mine) },
          },
          `${reaction.emoji} ${reaction.count}`,
        );
      }),
    );
  }

  renderActions(message, own) {
    const buttons = [
      el(
        "button",
        {
          type: "button",
          "aria-label": "Add reaction",
          title: "Add reaction",
          "aria-haspopup": "dialog",
          on: { click: (event) => this.actions.pickReaction(message, event.currentTarget) },
        },
        "☺",
      ),
      el("button", { type: "button", on: { click: () => this.actions.reply(message) } }, "Reply"),
    ];
    if (own) buttons.push(el("button", { type: "button", on: { click: () => this.startEdit(message.id) } }, "Edit"));
    if (own || this.actions.canDelete(message)) {
      buttons.push(el("button", { type: "button", on: { click: () => this.actions.remove(message) } }, "Delete"));
    }
    return el("div", { className: "message-actions", role: "group", "aria-label": "Actions" }, buttons);
  }

  /** Open the in-place editor of an own message: Enter saves, Escape cancels. */
  startEdit(id) {
    const message = this.messages.get(id);
    const node = this.items.get(id);
    if (!message || !node || message.deleted) return false;
    if (this.editing) this.endEdit();
    const input = el("textarea", { className: "edit-input", "aria-label": "Edit message", rows: "2", maxlength: "4000" });
    input.value = message.body;
    const error = el("p", { className: "form-error", role: "alert" });
    const save = async () => {
      const body = input.value.trim();
      if (!body || body === message.body) {
        this.endEdit();
        return;
      }
      input.disabled = true;
      const problem = await this.actions.saveEdit(message, body);
      input.disabled = false;
      if (problem) {
        error.textContent = problem;
        input.focus();
      } else {
        this.endEdit();
      }
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        save();
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        this.endEdit();
      }
    });
    const editor = el(
      "div",
      { className: "editor" },
      input,
      el(
        "div",
        { className: "editor-actions" },
        el("span", { className: "hint" }, "Enter saves, Escape cancels"),
        el("button", { type: "button", className: "secondary", on: { click: () => this.endEdit() } }, "Cancel"),
        el("button", { type: "button", className: "primary", on: { click: save } }, "Save"),
      ),
      error,
    );
    node.querySelector(".body").replaceWith(editor);
    node.classList.add("editing");
    this.editing = { id, node };
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
    return true;
  }

  endEdit() {
    if (!this.editing) return;
    const { id } = this.editing;
    this.editing = null;
    const message = this.messages.get(id);
    if (message) this.upsert(message, { follow: false });
    this.actions.editClosed();
  }

  renderPending(entry) {
    const failed = entry.status === "failed";
    const waiting = entry.status === "waiting";
    const status = failed ? "failed" : waiting ? "waiting" : "sending";
    const node = el(
      "li",
      {
        className: `message own ${failed ? "failed" : "pending"}`,
        dataset: { clientId: entry.client_id, status },
      },
      entry.reply_to ? this.renderQuote(entry.reply_to) : null,
      el(
        "div",
        { className: "meta" },
        el("span", { className: "sender" }, this.me.username),
        " ",
        timeElement(entry.created_at),
        deliveryLabel(status, entry),
      ),
      el("div", { className: "body" }, el("p", { className: "plain" }, entry.body)),
    );
    if (failed) {
      const reason = entry.error?.message || "the server refused it";
      node.append(
        el("p", { className: "send-error", role: "alert" }, `Not sent: ${reason}`),
        el(
          "div",
          { className: "send-actions" },
          el("button", { type: "button", on: { click: () => this.actions.retry(entry.client_id) } }, "Retry"),
          el("button", { type: "button", on: { click: () => this.actions.editFailed(entry.client_id) } }, "Edit"),
        ),
      );
    }
    return node;
  }
}

function deliveryLabel(status, entry) {
  if (status === "waiting") {
    return el(
      "span",
      { className: "delivery delivery-waiting" },
      "Sending too fast, waiting ",
      el("span", { className: "countdown", dataset: { until: String(entry.retry_at) } }, `${secondsLeft(entry.retry_at)} s`),
    );
  }
  const text = { sending: "Sending…", failed: "Not sent" }[status];
  return el("span", { className: `delivery delivery-${status}` }, text);
}

function setDivider(node, className, label) {
  let divider = node.querySelector(`:scope > .${className}`);
  if (!label) {
    divider?.remove();
    return;
  }
  if (!divider) {
    divider = el("div", { className, role: "separator" }, el("span", {}, ""));
    // The "New messages" line sits below the day divider, both above the message.
    const day = node.querySelector(":scope > .day-divider");
    if (className === "new-divider" && day) day.after(divider);
    else node.prepend(divider);
  }
  divider.setAttribute("aria-label", label);
  divider.firstChild.textContent = label;
}
