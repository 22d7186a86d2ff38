// Delivery rules of the chat page that need no DOM: merging by id and rev, catching up after a
// reconnect, grouping and day labels. Tested on their own with `node --test tests/js/`.

/** Messages by the same author this close together are shown as one group. */
export const GROUP_WINDOW_MS = 5 * 60 * 1000;

export function revOf(message) {
  return Number.isInteger(message?.rev) ? message.rev : 0;
}

/**
 * The copy of a message to keep when `incoming` arrives while `held` is known: the one with the
 * higher rev (the later change). On equal revs the held copy stays, so a repeat changes nothing.
 */
export function newer(held, incoming) {
  if (!held) return incoming;
  return revOf(incoming) > revOf(held) ? incoming : held;
}

/**
 * Put `message` into `messages` (a Map by id) unless a copy at least as new is already there.
 * Returns "added", "updated" or "unchanged".
 */
export function mergeInto(messages, message) {
  const held = messages.get(message.id);
  if (!held) {
    messages.set(message.id, message);
    return "added";
  }
  const kept = newer(held, message);
  if (kept === held) return "unchanged";
  messages.set(message.id, kept);
  return "updated";
}

/** The deleted form of a message, as the server sends it: no body, reactions, mentions or files. */
export function asDeleted(message, rev) {
  return {
    ...message,
    deleted: true,
    body: "",
    reactions: [],
    mentions: [],
    attachments: [],
    rev: Math.max(revOf(message), Number.isInteger(rev) ? rev : revOf(message)),
  };
}

/**
 * Fetch every page of `sync {"after": id}` from `after` on. `call(event, payload)` returns the
 * ack. `onPage(messages)` runs for each page; `shouldStop()` ends the loop early (a newer
 * connection took over). Resolves to the new id cursor, or null when the server refused.
 */
export async function catchUpById(call, after, onPage, shouldStop = () => false) {
  let cursor = after;
  for (;;) {
    const ack = await call("sync", { after: cursor });
    if (shouldStop()) return null;
    if (!ack || !ack.ok) return null;
    onPage(ack.messages);
    if (ack.messages.length > 0) cursor = ack.messages[ack.messages.length - 1].id;
    if (!ack.has_more || ack.messages.length === 0) return cursor;
  }
}

/**
 * Fetch every change after rev `after` with `sync {"after_rev"}`, page by page, taking the
 * cursor from each ack's `rev`. Resolves to the new rev cursor, or null when the server does
 * not offer rev-based sync (or refused), so the caller can keep its old cursor.
 */
export async function catchUpByRev(call, after, onPage, shouldStop = () => false) {
  let cursor = after;
  for (;;) {
    const ack = await call("sync", { after_rev: cursor });
    if (shouldStop()) return null;
    if (!ack || !ack.ok || !Number.isInteger(ack.rev)) return null;
    onPage(ack.messages);
    const advanced = ack.rev > cursor;
    cursor = Math.max(cursor, ack.rev);
    if (!ack.has_more || !advanced) return cursor;
  }
}

/** The highest rev among `messages`, or `floor` when none is higher. */
export function highestRev(messages, floor = 0) {
  let highest = floor;
  for (const message of messages) highest = Math.max(highest, revOf(message));
  return highest;
}

/** Whether `message` continues the group that `previous` belongs to (same author, same day, close in time). */
export function continuesGroup(previous, message) {
  if (!previous || !message || previous.deleted || message.deleted) return false;
  if (previous.sender?.id !== message.sender?.id) return false;
  if (message.reply_to) return false;
  const before = Date.parse(previous.created_at);
  const after = Date.parse(message.created_at);
  if (Number.isNaN(before) || Number.isNaN(after)) return false;
  if (!sameDay(new Date(before), new Date(after))) return false;
  return after - before >= 0 && after - before < GROUP_WINDOW_MS;
}

export function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/** "Today", "Yesterday", or the date in the reader's locale, with the year only when it is not this year. */
export function dayLabel(date, now = new Date(), locale = undefined) {
  if (sameDay(date, now)) return "Today";
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (sameDay(date, yesterday)) return "Yesterday";
  const options = { weekday: "long", month: "long", day: "numeric" };
  if (date.getFullYear() !== now.getFullYear()) options.year = "numeric";
  return date.toLocaleDateString(locale, options);
}

/**
 * The id of the first message a reader has not read: the first one after `lastReadId` that
 * someone else sent. Null when everything is read.
 */
export function firstUnreadId(sortedMessages, lastReadId, myId) {
  if (!lastReadId) return null;
  for (const message of sortedMessages) {
    if (message.id > lastReadId && message.sender?.id !== myId && !message.deleted) return message.id;
  }
  return null;
}

/** The "(3) #general · Switchboard" tab title. */
export function tabTitle(conversationTitle, unreadTotal) {
  const base = `${conversationTitle} · Switchboard`;
  return unreadTotal > 0 ? `(${unreadTotal}) ${base}` : base;
}

/**
 * The `@name` being typed just before the caret, for autocomplete: {start, query} or null.
 * A mention starts at the beginning or after a character that cannot be part of a username.
 */
export function mentionAtCaret(text, caret) {
  const before = text.slice(0, caret);
  const match = before.match(/(^|[^A-Za-z0-9_.-])@([A-Za-z0-9_.-]{0,32})$/);
  if (!match) return null;
  return { start: caret - match[2].length - 1, query: match[2] };
}

/**
 * Split `text` into plain and mention parts: `@name` for a name in `usernames` (compared
 * case-insensitively, longest first), following the server's rule for where a mention starts
 * and ends. Returns [{text, mention?: canonicalName}].
 */
export function splitMentions(text, usernames) {
  const names = [...new Set(usernames)].sort((a, b) => b.length - a.length);
  const lowered = names.map((name) => name.toLowerCase());
  const parts = [];
  let plain = "";
  let i = 0;
  while (i < text.length) {
    const startsHere = text[i] === "@" && (i === 0 || !/[A-Za-z0-9_.-]/.test(text[i - 1]));
    let found = -1;
    if (startsHere) {
      const rest = text.slice(i + 1).toLowerCase();
      found = lowered.findIndex(
        (name) => rest.startsWith(name) && !/[A-Za-z0-9]/.test(text[i + 1 + name.length] || ""),
      );
    }
    if (found >= 0) {
      if (plain) parts.push({ text: plain });
      plain = "";
      const length = names[found].length + 1;
      parts.push({ text: text.slice(i, i + length), mention: names[found] });
      i += length;
    } else {
      plain += text[i];
      i += 1;
    }
  }
  if (plain) parts.push({ text: plain });
  return parts;
}

/** Seconds left until `until` (a ms timestamp), never below zero, rounded up. */
export function secondsLeft(until, now = Date.now()) {
  return Math.max(0, Math.ceil((until - now) / 1000));
}

/** How long a `rate_limited` send waits before its next try: grows with each refusal, at most 10 s. */
export function rateLimitDelayMs(attempt) {
  return Math.min(10_000, 2_000 * 2 ** Math.max(0, attempt - 1));
}

/** The longest DM preview shown in the sidebar, in characters (the rest becomes "…"). */
export const PREVIEW_LENGTH = 60;

/**
 * The one-line, plain-text preview of a conversation's last message: "You: " before one's own,
 * "message deleted" for a deleted one, a file's name when there is no text, whitespace folded and
 * cut at `max` characters. Plain text only: it is shown with textContent, never as HTML.
 */
export function previewText(message, myId, max = PREVIEW_LENGTH) {
  if (!message) return "";
  const own = message.sender?.id === myId ? "You: " : "";
  if (message.deleted) return `${own}message deleted`;
  let text = String(message.body ?? "").replace(/\s+/g, " ").trim();
  if (!text && Array.isArray(message.attachments) && message.attachments.length > 0) {
    const names = message.attachments.map((file) => file?.name).filter(Boolean);
    text = names.length === 1 ? `File: ${names[0]}` : `${message.attachments.length} files`;
  }
  const characters = [...text]; // by code point, so an emoji is never cut in half
  if (characters.length > max) text = `${characters.slice(0, max - 1).join("").trimEnd()}…`;
  return own + text;
}
