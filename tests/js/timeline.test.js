// The chat page's delivery rules, without a browser: merging by rev, catch-up loops, grouping.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  asDeleted,
  catchUpById,
  catchUpByRev,
  continuesGroup,
  dayLabel,
  firstUnreadId,
  highestRev,
  mentionAtCaret,
  mergeInto,
  newer,
  PREVIEW_LENGTH,
  previewText,
  rateLimitDelayMs,
  secondsLeft,
  splitMentions,
  tabTitle,
} from "../../static/js/timeline.js";

const ann = { id: 1, username: "ann" };
const bob = { id: 2, username: "bob" };

function msg(id, rev, extra = {}) {
  return { id, rev, room: "general", sender: ann, body: `m${id}`, created_at: "2026-01-10T10:00:00Z", ...extra };
}

test("merge keeps the copy with the higher rev whatever the order of arrival", () => {
  const messages = new Map();
  assert.equal(mergeInto(messages, msg(1, 5)), "added");
  assert.equal(mergeInto(messages, msg(1, 7, { body: "edited" })), "updated");
  assert.equal(mergeInto(messages, msg(1, 6, { body: "stale" })), "unchanged");
  assert.equal(mergeInto(messages, msg(1, 7, { body: "edited" })), "unchanged");
  assert.equal(messages.get(1).body, "edited");
  assert.equal(messages.size, 1);
});

test("a message without a rev never replaces one with a rev", () => {
  const held = msg(3, 4);
  assert.equal(newer(held, { ...held, rev: undefined, body: "old" }), held);
  assert.equal(newer(null, held), held);
});

test("the deleted form drops body, reactions, mentions and attachments", () => {
  const deleted = asDeleted(msg(1, 2, { reactions: [{ emoji: "👍", count: 1, users: ["bob"] }], mentions: ["bob"] }), 9);
  assert.deepEqual([deleted.deleted, deleted.body, deleted.reactions, deleted.mentions, deleted.rev], [true, "", [], [], 9]);
});

function fakeServer(pages) {
  const calls = [];
  return {
    calls,
    call: async (event, payload) => {
      calls.push([event, payload]);
      return pages.shift();
    },
  };
}

test("catch-up by rev follows the ack's rev page after page until has_more is false", async () => {
  const server = fakeServer([
    { ok: true, messages: [msg(1, 11), msg(2, 12)], has_more: true, rev: 12 },
    { ok: true, messages: [msg(1, 13)], has_more: false, rev: 13 },
  ]);
  const seen = [];
  const cursor = await catchUpByRev(server.call, 10, (page) => seen.push(...page.map((m) => m.rev)));
  assert.equal(cursor, 13);
  assert.deepEqual(seen, [11, 12, 13]);
  assert.deepEqual(server.calls, [
    ["sync", { after_rev: 10 }],
    ["sync", { after_rev: 12 }],
  ]);
});

test("catch-up by rev answers null when the server has no rev-based sync", async () => {
  const server = fakeServer([{ ok: false, error: { code: "invalid", message: "after must be an id" } }]);
  assert.equal(await catchUpByRev(server.call, 3, () => assert.fail("no page")), null);
  const old = fakeServer([{ ok: true, messages: [], has_more: false }]);
  assert.equal(await catchUpByRev(old.call, 3, () => {}), null);
});

test("catch-up by rev stops when a newer connection takes over", async () => {
  const server = fakeServer([{ ok: true, messages: [msg(1, 11)], has_more: true, rev: 11 }]);
  assert.equal(await catchUpByRev(server.call, 10, () => assert.fail("no page"), () => true), null);
});

test("catch-up by rev does not loop on a page that does not advance", async () => {
  const server = fakeServer([{ ok: true, messages: [], has_more: true, rev: 10 }]);
  assert.equal(await catchUpByRev(server.call, 10, () => {}), 10);
  assert.equal(server.calls.length, 1);
});

test("catch-up by id moves the cursor to the last id of each page", async () => {
  const server = fakeServer([
    { ok: true, messages: [msg(5, 1), msg(6, 2)], has_more: true },
    { ok: true, messages: [msg(7, 3)], has_more: false },
  ]);
  assert.equal(await catchUpById(server.call, 4, () => {}), 7);
  assert.deepEqual(
    server.calls.map(([, payload]) => payload.after),
    [4, 6],
  );
});

test("highest rev", () => {
  assert.equal(highestRev([msg(1, 3), msg(2, 9), msg(3, 4)], 5), 9);
  assert.equal(highestRev([], 5), 5);
});

test("messages group by author within five minutes on one day", () => {
  const first = msg(1, 1, { created_at: "2026-01-10T10:00:00Z" });
  assert.equal(continuesGroup(first, msg(2, 2, { created_at: "2026-01-10T10:04:59Z" })), true);
  assert.equal(continuesGroup(first, msg(2, 2, { created_at: "2026-01-10T10:05:00Z" })), false);
  assert.equal(continuesGroup(first, msg(2, 2, { sender: bob, created_at: "2026-01-10T10:01:00Z" })), false);
  assert.equal(continuesGroup(first, msg(2, 2, { reply_to: 1, created_at: "2026-01-10T10:01:00Z" })), false);
  assert.equal(continuesGroup(null, first), false);
});

test("day labels: Today, Yesterday, dates with the year only when it is not this year", () => {
  const now = new Date(2026, 5, 15, 12, 0);
  assert.equal(dayLabel(new Date(2026, 5, 15, 0, 1), now), "Today");
  assert.equal(dayLabel(new Date(2026, 5, 14, 23, 59), now), "Yesterday");
  const thisYear = dayLabel(new Date(2026, 0, 3), now, "en-US");
  assert.match(thisYear, /January 3/);
  assert.doesNotMatch(thisYear, /2026/);
  assert.match(dayLabel(new Date(2025, 11, 31), now, "en-US"), /December 31, 2025/);
});

test("the first unread message is the first one from someone else after the marker", () => {
  const list = [msg(1, 1, { sender: bob }), msg(2, 2), msg(3, 3, { sender: bob }), msg(4, 4, { sender: bob })];
  assert.equal(firstUnreadId(list, 1, ann.id), 3);
  assert.equal(firstUnreadId(list, 4, ann.id), null);
  assert.equal(firstUnreadId(list, 0, ann.id), null);
});

test("tab title carries the unread total", () => {
  assert.equal(tabTitle("#general", 3), "(3) #general · Switchboard");
  assert.equal(tabTitle("@bob", 0), "@bob · Switchboard");
});

test("the mention being typed is found before the caret", () => {
  assert.deepEqual(mentionAtCaret("hi @bo", 6), { start: 3, query: "bo" });
  assert.deepEqual(mentionAtCaret("@", 1), { start: 0, query: "" });
  assert.equal(mentionAtCaret("mail ann@bo", 11), null);
  assert.equal(mentionAtCaret("hi @bo there", 12), null);
});

test("mentions are split out by the server's rule, longest name first", () => {
  const parts = splitMentions("@eli, hi @eli.jones and @ELI. mail x@eli @elix", ["eli", "eli.jones"]);
  assert.deepEqual(
    parts.filter((part) => part.mention).map((part) => [part.text, part.mention]),
    [
      ["@eli", "eli"],
      ["@eli.jones", "eli.jones"],
      ["@ELI", "eli"],
    ],
  );
  assert.equal(parts.map((part) => part.text).join(""), "@eli, hi @eli.jones and @ELI. mail x@eli @elix");
});

test("rate-limited sends wait longer each time, at most ten seconds", () => {
  assert.deepEqual([1, 2, 3, 4, 5].map(rateLimitDelayMs), [2000, 4000, 8000, 10000, 10000]);
  assert.equal(secondsLeft(10_500, 9_000), 2);
  assert.equal(secondsLeft(1_000, 9_000), 0);
});

test("a DM preview is one line of plain text, cut, with You: and deletions named", () => {
  const mine = { id: 5, sender: { id: 1 }, body: "see **this**\n\nand <b>that</b>", attachments: [] };
  assert.equal(previewText(mine, 1), "You: see **this** and <b>that</b>");
  assert.equal(previewText({ ...mine, sender: { id: 2 } }, 1), "see **this** and <b>that</b>");
  assert.equal(previewText({ ...mine, deleted: true, body: "" }, 1), "You: message deleted");
  assert.equal(previewText({ ...mine, sender: { id: 2 }, deleted: true, body: "" }, 1), "message deleted");
  const long = previewText({ ...mine, sender: { id: 2 }, body: "word ".repeat(40) }, 1);
  assert.ok(long.endsWith("…") && [...long].length <= PREVIEW_LENGTH, long);
  const emoji = previewText({ ...mine, sender: { id: 2 }, body: "😀".repeat(80) }, 1, 10);
  assert.equal(emoji, `${"😀".repeat(9)}…`);
  const file = { ...mine, body: "", attachments: [{ name: "plan.pdf" }] };
  assert.equal(previewText(file, 2), "File: plan.pdf");
  assert.equal(previewText({ ...file, attachments: [{ name: "a" }, { name: "b" }] }, 2), "2 files");
  assert.equal(previewText(null, 1), "");
});
