// The message list of the open conversation: confirmed messages in id order, then the outbox's.
import { renderAttachments } from "./attachments.js";
import { el, timeElement } from "./dom.js";

// Within this distance of the bottom the list follows new messages; further up it stays put.
const STICK_TO_BOTTOM_PX = 80;

export class MessageList {
  constructor({ scroller, list, olderButton, olderNote, me, onRetry, onEdit }) {
    this.scroller = scroller;
    this.list = list;
    this.olderButton = olderButton;
    this.olderNote = olderNote;
    this.me = me;
    this.onRetry = onRetry;
    this.onEdit = onEdit;
    this.items = new Map(); // message id -> <li>
    this.pending = new Map(); // client_id -> <li>
  }

  /** Replace everything with one conversation's messages and outbox entries. */
  show(messages, entries) {
    this.items.clear();
    this.pending.clear();
    this.list.replaceChildren();
    for (const message of messages) this.upsert(message, { follow: false });
    for (const entry of entries) this.addPending(entry, { follow: false });
    this.scrollToBottom();
  }

  isNearBottom() {
    const { scrollTop, scrollHeight, clientHeight } = this.scroller;
    return scrollHeight - scrollTop - clientHeight <= STICK_TO_BOTTOM_PX;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /** Insert or redraw a confirmed message at its place by id. */
  upsert(message, { follow = true, justSent = false } = {}) {
    const stick = follow && this.isNearBottom();
    const existing = this.items.get(message.id);
    // A redraw (say, after a deletion) keeps the "Sent" mark of a message sent from this page.
    const node = this.renderMessage(message, justSent || existing?.dataset.justSent === "1");
    if (existing) {
      existing.replaceWith(node);
    } else {
      this.list.insertBefore(node, this.nodeAfter(message.id));
    }
    this.items.set(message.id, node);
    if (stick) this.scrollToBottom();
  }

  /** Add older messages above the others without moving what the reader is looking at. */
  prependOlder(messages) {
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    for (const message of messages) this.upsert(message, { follow: false });
    this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
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

  /** The slot above the messages: a button while older pages exist, a note at the beginning. */
  setOlderState({ loaded, loading, hasMore, title }) {
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    this.olderButton.hidden = !(loaded && hasMore);
    this.olderButton.disabled = Boolean(loading);
    this.olderButton.textContent = loading ? "Loading older messages…" : "Load older messages";
    this.olderNote.hidden = loaded ? hasMore : !loading;
    this.olderNote.textContent = loaded ? `This is the beginning of ${title}.` : "Loading messages…";
    // Whatever changed above the messages must not move them.
    this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
  }

  renderMessage(message, justSent) {
    const own = message.sender.id === this.me.id;
    const classes = ["message"];
    if (own) classes.push("own");
    if (message.deleted) classes.push("deleted");
    const body = message.deleted
      ? el("p", { className: "body" }, "This message was deleted.")
      : el("p", { className: "body" }, message.body);
    return el(
      "li",
      {
        className: classes.join(" "),
        dataset: { id: String(message.id), status: "sent", ...(justSent ? { justSent: "1" } : {}) },
      },
      el(
        "div",
        { className: "meta" },
        el("span", { className: "sender" }, message.sender.username),
        " ",
        timeElement(message.created_at),
        justSent ? deliveryLabel("sent") : null,
      ),
      body,
      !message.deleted && message.attachments?.length ? renderAttachments(message.attachments) : null,
    );
  }

  renderPending(entry) {
    const failed = entry.status === "failed";
    const node = el(
      "li",
      {
        className: `message own ${failed ? "failed" : "pending"}`,
        dataset: { clientId: entry.client_id, status: failed ? "failed" : "sending" },
      },
      el(
        "div",
        { className: "meta" },
        el("span", { className: "sender" }, this.me.username),
        " ",
        timeElement(entry.created_at),
        deliveryLabel(failed ? "failed" : "sending"),
      ),
      el("p", { className: "body" }, entry.body),
    );
    if (failed) {
      const reason = entry.error?.message || "the server refused it";
      node.append(
        el("p", { className: "send-error", role: "alert" }, `Not sent: ${reason}`),
        el(
          "div",
          { className: "send-actions" },
          el("button", { type: "button", on: { click: () => this.onRetry(entry.client_id) } }, "Retry"),
          el("button", { type: "button", on: { click: () => this.onEdit(entry.client_id) } }, "Edit"),
        ),
      );
    }
    return node;
  }
}

function deliveryLabel(status) {
  const text = { sending: "Sending…", sent: "Sent", failed: "Not sent" }[status];
  return el("span", { className: `delivery delivery-${status}` }, text);
}
