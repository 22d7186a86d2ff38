// The chat page: rooms and direct messages over one socket, catch-up after every reconnect,
// and an outbox that keeps each message until the server has acknowledged it.
import MarkdownIt from "/static/vendor/markdown-it.esm.min.js";
import { io } from "/static/vendor/socket.io.esm.min.js";
import { AttachmentTray } from "./attachments.js";
import { el, newClientId, timeElement } from "./dom.js";
import { createMarkdown } from "./markdown.js";
import { MessageList, snippet } from "./message-list.js";
import { Outbox } from "./outbox.js";
import { Notifier } from "./notifications.js";
import { mountSearch } from "./search.js";
import {
  asDeleted,
  catchUpById,
  catchUpByRev,
  highestRev,
  mentionAtCaret,
  mergeInto,
  previewText,
  rateLimitDelayMs,
  revOf,
  tabTitle,
} from "./timeline.js";

const ACK_TIMEOUT_MS = 10000;
const RESEND_DELAY_MS = 3000;
const PAGE_SIZE = 50;
// Older history is fetched once the reader scrolls within this distance of the top.
const LOAD_OLDER_PX = 200;
const TYPING_REFRESH_MS = 3000;
const TYPING_IDLE_MS = 4000;
const TYPING_EXPIRY_MS = 8000;
const BODY_LIMIT = 4000;
const COUNTER_FROM = 3500;
const ROOM_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;
const GENERAL = "general";
const REACTION_CHOICES = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀"];
// A reply's original may be further back than what is loaded: look this many pages back for it.
const JUMP_PAGES = 5;

const $ = (id) => document.getElementById(id);
const root = $("chat");
const me = JSON.parse(root.dataset.user);
const ui = {
  title: $("conversation-title"),
  topic: $("conversation-topic"),
  status: $("connection-status"),
  roomList: $("room-list"),
  dmList: $("dm-list"),
  dmEmpty: $("dm-empty"),
  onlineList: $("online-list"),
  onlineCount: $("online-count"),
  roomMenu: $("room-menu"),
  leaveButton: $("leave-room"),
  announcement: $("announcement"),
  listError: $("list-error"),
  roomMissing: $("room-missing"),
  roomMissingText: $("room-missing-text"),
  createMissing: $("create-missing"),
  createMissingPrivate: $("create-missing-private"),
  createMissingError: $("create-missing-error"),
  typing: $("typing"),
  composer: $("composer"),
  composerLabel: $("composer-label"),
  input: $("composer-input"),
  charCount: $("char-count"),
  suggestions: $("mention-suggestions"),
  replyPreview: $("reply-preview"),
  replySender: $("reply-to-sender"),
  replySnippet: $("reply-to-snippet"),
  sidebar: $("sidebar"),
  sidebarToggle: $("sidebar-toggle"),
  toggleBadge: $("toggle-badge"),
  toggleUnread: $("toggle-unread"),
  backdrop: $("sidebar-backdrop"),
  scroller: $("message-scroller"),
  olderButton: $("load-older"),
  olderNote: $("older-note"),
  newBelow: $("new-below"),
  jumpUnread: $("jump-unread"),
  kicked: $("kicked-screen"),
  kickedTitle: $("kicked-title"),
  kickedReason: $("kicked-reason"),
  reconnect: $("reconnect"),
  emojiPicker: $("emoji-picker"),
  people: $("people-options"),
  favicon: $("favicon"),
};

class Conversation {
  constructor(kind, name) {
    this.kind = kind; // "room" or "dm"
    this.name = name; // room name, or the other user's username
    this.messages = new Map(); // id -> MESSAGE, filled once the conversation has been opened
    this.loaded = false;
    this.loading = false;
    this.loadingOlder = false;
    this.hasMore = true;
    this.unread = 0;
    this.mentions = 0;
    this.readSent = 0; // highest id this page has reported with `read`
    this.lastReadId = 0; // the marker as the server last confirmed it
    this.lastActivity = 0; // id of the newest message known, for ordering DMs
    this.listed = false; // a DM the server listed, or one that has messages
    this.room = null; // ROOM as the server last described it
    this.missing = false; // a room that does not exist (yet)
    this.firstUnreadId = null;
    this.last = null; // the newest MESSAGE of a DM conversation, for its preview in the sidebar
    this.previewNode = null; // that preview's element in the sidebar, while it is shown
  }

  get key() {
    return conversationKey(this.kind, this.name);
  }

  get title() {
    return this.kind === "room" ? `#${this.name}` : `@${this.name}`;
  }

  get hash() {
    return `#/${this.kind}/${encodeURIComponent(this.name)}`;
  }

  sorted() {
    return [...this.messages.values()].sort((a, b) => a.id - b.id);
  }

  oldestId() {
    let oldest = null;
    for (const id of this.messages.keys()) if (oldest === null || id < oldest) oldest = id;
    return oldest;
  }

  newestId() {
    let newest = 0;
    for (const id of this.messages.keys()) if (id > newest) newest = id;
    return newest;
  }
}

function conversationKey(kind, name) {
  return `${kind}:${kind === "dm" ? name.toLowerCase() : name}`;
}

const state = {
  conversations: new Map(),
  rooms: new Set(), // rooms this user is a member of, as the server last said
  current: null,
  ready: false, // connected, and the server's `session` has arrived
  epoch: 0, // counts sessions, so work begun for an older connection stops
  connectedBefore: false,
  highestSeen: 0, // highest message id received from any source
  // The `sync` cursor: every message up to it is known to be here. It moves only to the end
  // of a `sync` page (or, once, to what the first load showed), never to an id that arrived
  // live or in an ack: two messages committed together can be broadcast in either order, so
  // holding id 104 live does not mean 103 has arrived.
  syncCursor: 0,
  // Until the first `sync`, the lowest id that arrived live or in an ack: catching up from just
  // below it misses nothing that this page was shown happening.
  liveFloor: 0,
  // The `sync {"after_rev"}` cursor: every change up to this rev is reflected in the loaded
  // conversations. Set once from the first page the server answered (a snapshot that shows
  // every change up to its highest rev), then moved only by `sync` acks. Null until then.
  revCursor: null,
  counted: new Set(), // message ids already weighed for unread counts
  online: new Map(), // user id -> USER
  knownUsers: new Map(), // lowercased username -> username, for @-completion
  typers: new Map(), // room -> Map(user id -> {user, timer})
  kicked: null,
  hiddenUnread: 0, // messages that arrived in the open conversation while the tab was hidden
  sessionCountsDms: false, // the server's `session` carries DM unread counts (`dms`)
  replyTo: null, // MESSAGE being replied to
};

const outbox = new Outbox(me.id);
const notifier = new Notifier(me.id, $("notify-toggle"), $("notify-status"));
const markdown = createMarkdown(MarkdownIt);

const params = new URLSearchParams(location.search);
const socket = io(params.get("transport") === "polling" ? { transports: ["polling"] } : {});
let adminSocket = null;
window.switchboard = { socket, state, outbox, me, notifier };

const list = new MessageList({
  scroller: ui.scroller,
  list: $("messages"),
  newBelow: ui.newBelow,
  jumpUnread: ui.jumpUnread,
  me,
  markdown,
  actions: {
    retry,
    editFailed,
    reply: startReply,
    remove: confirmDelete,
    react,
    pickReaction: openEmojiPicker,
    jump: jumpTo,
    saveEdit,
    editClosed: () => ui.input.focus(),
    canDelete: () => Boolean(me.is_admin),
    lookup: (id) => state.current?.messages.get(id) || null,
  },
});

// -- conversations and the sidebar ------------------------------------------------

function getConversation(kind, name) {
  const key = conversationKey(kind, name);
  let conversation = state.conversations.get(key);
  if (!conversation) {
    conversation = new Conversation(kind, name);
    state.conversations.set(key, conversation);
  }
  return conversation;
}

function conversationOf(message) {
  if (message.room) return getConversation("room", message.room);
  const other = message.sender.id === me.id ? message.recipient : message.sender;
  return getConversation("dm", other.username);
}

function knowUser(user) {
  if (user?.username && user.id !== me.id) state.knownUsers.set(user.username.toLowerCase(), user.username);
}

function roomConversations() {
  return [...state.conversations.values()]
    .filter((c) => c.kind === "room" && (state.rooms.has(c.name) || (c === state.current && !c.missing)))
    .sort((a, b) => a.name.localeCompare(b.name));
}

function dmConversations() {
  return [...state.conversations.values()]
    .filter((c) => c.kind === "dm" && (c.listed || c.messages.size > 0 || c === state.current))
    .sort((a, b) => b.lastActivity - a.lastActivity || a.name.toLowerCase().localeCompare(b.name.toLowerCase()));
}

function renderSidebar() {
  const rooms = roomConversations();
  const dms = dmConversations();
  ui.roomList.replaceChildren(...rooms.map(sidebarItem));
  ui.dmList.replaceChildren(...dms.map(sidebarItem));
  ui.dmEmpty.hidden = dms.length > 0;
  renderPeopleOptions();
  renderUnreadTotal();
}

function sidebarItem(conversation) {
  const current = conversation === state.current;
  const unread = current ? 0 : conversation.unread;
  const mentions = current ? 0 : conversation.mentions;
  const previewId = conversation.kind === "dm" ? `dm-preview-${conversation.name.toLowerCase()}` : null;
  const link = el(
    "a",
    { href: conversation.hash, "aria-current": current ? "page" : null, "aria-describedby": previewId },
    conversation.room?.private ? el("span", { className: "lock", "aria-hidden": "true", title: "Private" }) : null,
    el("span", { className: "conversation-name" }, conversation.title),
    conversation.room?.private ? el("span", { className: "visually-hidden" }, " (private)") : null,
  );
  if (mentions > 0) {
    link.append(
      el("span", { className: "mention-badge", title: `${mentions} mentioning you` }, `@${mentions}`),
      el("span", { className: "visually-hidden" }, ` ${mentions === 1 ? "mention" : "mentions"}`),
    );
  }
  if (unread > 0) {
    link.append(
      el("span", { className: "unread", title: `${unread} unread` }, String(unread)),
      el("span", { className: "visually-hidden" }, " unread"),
    );
  }
  if (previewId) {
    // The name stays the link's whole accessible name (a preview may quote anyone's name or a
    // #room); the preview is its description.
    conversation.previewNode = el("span", { className: "preview", id: previewId, "aria-hidden": "true" });
    renderPreview(conversation);
    link.append(conversation.previewNode);
  }
  return el(
    "li",
    {
      className: unread > 0 ? "has-unread" : "",
      dataset: {
        [conversation.kind === "room" ? "room" : "user"]: conversation.name,
        // The read marker the server confirmed, for anyone checking that reads are stored.
        ...(conversation.lastReadId ? { lastRead: String(conversation.lastReadId) } : {}),
      },
    },
    link,
  );
}

/** Keep `message` as the conversation's last one if it is the newest (or a newer copy of it). */
function noteLast(conversation, message, { force = false } = {}) {
  if (conversation.kind !== "dm" || !message) return;
  const last = conversation.last;
  // As in mergeInto: for the same message only a later change (a higher rev) replaces it.
  if (last && !force && (message.id < last.id || (message.id === last.id && revOf(message) <= revOf(last)))) return;
  conversation.last = message;
  renderPreview(conversation);
}

function renderPreview(conversation) {
  const node = conversation.previewNode;
  if (!node) return;
  const text = previewText(conversation.last, me.id);
  if (node.textContent !== text) node.textContent = text;
  node.hidden = text === "";
}

function unreadTotal() {
  let total = state.hiddenUnread;
  for (const conversation of state.conversations.values()) {
    if (conversation !== state.current) total += conversation.unread;
  }
  return total;
}

function renderUnreadTotal() {
  const total = unreadTotal();
  document.title = tabTitle(state.current ? state.current.title : "#general", total);
  const href = total > 0 ? ui.favicon.dataset.unreadHref : ui.favicon.getAttribute("href").replace("-unread", "");
  if (ui.favicon.getAttribute("href") !== href) ui.favicon.setAttribute("href", href);
  ui.toggleBadge.hidden = total === 0;
  ui.toggleBadge.textContent = total > 0 ? String(total) : "";
  // The badge is drawn for the eye; the button's description says the same in words.
  ui.toggleUnread.textContent = total > 0 ? `${total} unread` : "";
}

function renderOnline() {
  const others = [...state.online.values()]
    .filter((user) => user.id !== me.id)
    .sort((a, b) => a.username.toLowerCase().localeCompare(b.username.toLowerCase()));
  ui.onlineCount.textContent = `(${others.length})`;
  ui.onlineList.replaceChildren(
    ...others.map((user) =>
      el(
        "li",
        { dataset: { user: user.username } },
        el(
          "button",
          {
            type: "button",
            className: "person",
            title: `Direct message ${user.username}`,
            on: { click: () => navigate(getConversation("dm", user.username)) },
          },
          el("span", { className: "presence-dot", "aria-hidden": "true" }),
          user.username,
        ),
      ),
    ),
  );
  if (!others.length) ui.onlineList.append(el("li", { className: "hint" }, "Nobody else is online."));
  renderPeopleOptions();
}

function peopleNames() {
  const names = new Map(state.knownUsers);
  for (const user of state.online.values()) if (user.id !== me.id) names.set(user.username.toLowerCase(), user.username);
  for (const c of state.conversations.values()) if (c.kind === "dm") names.set(c.name.toLowerCase(), c.name);
  names.delete(me.username.toLowerCase());
  return [...names.values()].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
}

function renderPeopleOptions() {
  const online = new Set([...state.online.values()].map((user) => user.username));
  ui.people.replaceChildren(
    ...peopleNames().map((name) => el("option", { value: name }, online.has(name) ? "online" : "")),
  );
}

function navigate(conversation) {
  if (location.hash !== conversation.hash) location.hash = conversation.hash;
  else route();
}

/** The conversation the address names; general for anything else. */
function route() {
  const match = location.hash.match(/^#\/(room|dm)\/(.+)$/);
  let target = null;
  if (match) {
    let name = "";
    try {
      name = decodeURIComponent(match[2]);
    } catch {
      name = "";
    }
    if (match[1] === "room" && ROOM_NAME.test(name)) target = getConversation("room", name);
    if (match[1] === "dm" && USERNAME.test(name)) target = getConversation("dm", name);
  }
  openConversation(target || getConversation("room", GENERAL));
  closeSidebar({ focusComposer: false });
  focusComposer();
}

function focusComposer() {
  if (state.current?.missing) ui.createMissing.focus();
  else if (!ui.input.disabled) ui.input.focus();
}

function openConversation(conversation) {
  if (state.current === conversation) return;
  if (state.current) saveDraft(state.current);
  stopTyping();
  cancelReply();
  closeSuggestions();
  state.current = conversation;
  // Where the unread messages begin is worked out once the messages are in.
  conversation.unreadAtOpen = conversation.unread;
  conversation.firstUnreadId = null;
  conversation.unread = 0;
  conversation.mentions = 0;
  state.hiddenUnread = 0;
  ui.title.textContent = conversation.title;
  ui.composerLabel.textContent = `Message ${conversation.title}`;
  ui.listError.textContent = "";
  restoreDraft(conversation);
  renderHeader();
  showConversation();
  renderSidebar();
  renderTyping();
  if (state.ready) prepare(conversation, state.epoch);
}

function renderHeader() {
  const conversation = state.current;
  const isRoom = conversation.kind === "room";
  const member = isRoom && state.rooms.has(conversation.name);
  ui.topic.textContent = isRoom ? conversation.room?.topic || "" : "";
  ui.topic.hidden = !ui.topic.textContent;
  ui.roomMenu.hidden = !member;
  ui.leaveButton.hidden = !member || conversation.name === GENERAL;
  if (ui.roomMenu.hidden) ui.roomMenu.open = false;
  ui.title.classList.toggle("private", Boolean(conversation.room?.private));
  ui.roomMissing.hidden = !conversation.missing;
  if (conversation.missing) {
    ui.roomMissingText.textContent = `There is no room named #${conversation.name}.`;
    ui.createMissing.textContent = `Create #${conversation.name}`;
    ui.createMissingError.textContent = "";
  }
  setComposerEnabled(!conversation.missing && !state.kicked);
}

function setComposerEnabled(enabled) {
  ui.input.disabled = !enabled;
  ui.composer.querySelector('button[type="submit"]').disabled = !enabled;
}

function showConversation() {
  const conversation = state.current;
  list.show(conversation.sorted(), outbox.forConversation(conversation.kind, conversation.name), {
    firstUnreadId: conversation.firstUnreadId,
  });
  renderOlderState();
}

function renderOlderState() {
  const conversation = state.current;
  list.setOlderState({
    loaded: conversation.loaded && !conversation.missing,
    loading: conversation.loading || conversation.loadingOlder,
    hasMore: conversation.hasMore,
    title: conversation.title,
    olderButton: ui.olderButton,
    olderNote: ui.olderNote,
  });
  if (conversation.missing) ui.olderNote.hidden = true;
}

/** Work out the "New messages" line from the unread count the conversation had when opened. */
function placeUnreadLine(conversation) {
  let remaining = conversation.unreadAtOpen || 0;
  conversation.unreadAtOpen = 0;
  if (remaining <= 0) return;
  const sorted = conversation.sorted();
  for (let i = sorted.length - 1; i >= 0 && remaining > 0; i -= 1) {
    if (sorted[i].sender.id !== me.id) {
      remaining -= 1;
      if (remaining === 0) conversation.firstUnreadId = sorted[i].id;
    }
  }
  if (conversation === state.current && conversation.firstUnreadId) list.revealFirstUnread(conversation.firstUnreadId);
}

/** Make sure the open conversation is joined (if it exists) and loaded, then mark it read. */
async function prepare(conversation, epoch) {
  try {
    if (conversation.kind === "room" && !state.rooms.has(conversation.name)) {
      if (!(await enterExistingRoom(conversation, epoch))) return;
      if (epoch !== state.epoch) return;
    }
    await loadLatest(conversation, epoch);
    if (epoch === state.epoch && conversation === state.current) {
      placeUnreadLine(conversation);
      fillViewport(conversation);
      markRead();
    }
  } catch (error) {
    reportCallFailure(error);
  }
}

/**
 * A room named by the address that this user is not a member of: join it if it exists, and
 * otherwise offer to create it. A typo must never create a room.
 */
async function enterExistingRoom(conversation, epoch) {
  const probe = await call("history", { room: conversation.name, limit: 1 });
  if (epoch !== state.epoch || conversation !== state.current) return false;
  if (!probe.ok) {
    if (probe.error.code === "not_found") {
      conversation.missing = true;
      conversation.loaded = false;
      renderHeader();
      renderOlderState();
      renderSidebar();
      if (document.activeElement === ui.input || document.activeElement === document.body) ui.createMissing.focus();
    } else {
      ui.listError.textContent = probe.error.message;
    }
    return false;
  }
  conversation.missing = false;
  const ack = await joinRoom(conversation.name);
  if (!ack.ok) {
    if (conversation === state.current) ui.listError.textContent = ack.error.message;
    return false;
  }
  return true;
}

// -- socket calls ------------------------------------------------------------------

/** Emit with an acknowledgement; rejects on timeout or disconnect, never hangs. */
function call(event, payload) {
  return socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
}

function reportCallFailure(error) {
  // Losing the connection mid-call is normal: the next session repeats the work.
  if (state.ready) ui.listError.textContent = `The server did not answer (${error.message}).`;
}

function target(conversation) {
  return conversation.kind === "room" ? { room: conversation.name } : { user: conversation.name };
}

function noteRoom(room) {
  if (!room?.name) return null;
  const conversation = getConversation("room", room.name);
  conversation.room = room;
  conversation.missing = false;
  return conversation;
}

/** A snapshot from the server (a page of history or a join): it may start the rev cursor. */
function noteSnapshot(messages) {
  if (state.revCursor === null && messages.length > 0) state.revCursor = highestRev(messages);
}

async function joinRoom(name, extra = {}) {
  const ack = await call("join", { room: name, ...extra });
  if (!ack.ok) return ack;
  const conversation = noteRoom(ack.room);
  state.rooms.add(ack.room.name);
  conversation.loading = true;
  for (const message of ack.messages) receive(message, "page");
  noteSnapshot(ack.messages);
  conversation.loading = false;
  if (!conversation.loaded) conversation.hasMore = ack.messages.length >= PAGE_SIZE;
  conversation.loaded = true;
  if (conversation === state.current) {
    renderHeader();
    showConversation();
  }
  renderSidebar();
  return ack;
}

async function loadLatest(conversation, epoch) {
  if (conversation.loaded || conversation.loading) return;
  conversation.loading = true;
  if (conversation === state.current) renderOlderState();
  try {
    const event = conversation.kind === "room" ? "history" : "dm_history";
    const ack = await call(event, { ...target(conversation), limit: PAGE_SIZE });
    if (epoch !== state.epoch) return;
    if (!ack.ok) {
      if (conversation === state.current) {
        ui.listError.textContent =
          ack.error.code === "not_found" && conversation.kind === "dm"
            ? `There is no user named ${conversation.name}.`
            : ack.error.message;
      }
      return;
    }
    for (const message of ack.messages) receive(message, "page");
    noteSnapshot(ack.messages);
    conversation.hasMore = ack.has_more;
    conversation.loaded = true;
  } finally {
    conversation.loading = false;
    if (conversation === state.current) showConversation();
  }
}

async function loadOlder() {
  const conversation = state.current;
  if (!state.ready || !conversation.loaded || conversation.loadingOlder || !conversation.hasMore) return false;
  const before = conversation.oldestId();
  if (before === null) {
    conversation.hasMore = false;
    renderOlderState();
    return false;
  }
  conversation.loadingOlder = true;
  renderOlderState();
  try {
    const event = conversation.kind === "room" ? "history" : "dm_history";
    const ack = await call(event, { ...target(conversation), before, limit: PAGE_SIZE });
    if (!ack.ok) {
      ui.listError.textContent = ack.error.message;
      return false;
    }
    const older = ack.messages.filter((message) => !conversation.messages.has(message.id));
    for (const message of older) {
      conversation.messages.set(message.id, message);
      state.counted.add(message.id);
      knowUser(message.sender);
    }
    conversation.hasMore = ack.has_more;
    if (conversation === state.current) list.prependOlder(older);
    return true;
  } catch (error) {
    reportCallFailure(error);
    return false;
  } finally {
    conversation.loadingOlder = false;
    if (conversation === state.current) {
      renderOlderState();
      fillViewport(conversation);
    }
  }
}

/** Keep loading older pages while they do not even fill the screen, so scrolling up is possible. */
function fillViewport(conversation) {
  const scroller = ui.scroller;
  if (conversation === state.current && conversation.hasMore && scroller.scrollHeight <= scroller.clientHeight) {
    loadOlder();
  }
}

/** Catch up on every new message missed while disconnected, one page of `sync` at a time. */
async function catchUp(epoch, from) {
  const cursor = await catchUpById(
    call,
    from,
    (page) => {
      for (const message of page) receive(message, "sync");
    },
    () => epoch !== state.epoch,
  );
  if (cursor !== null) state.syncCursor = cursor;
}

/** Catch up on edits, deletions and reactions made while disconnected. */
async function catchUpChanges(epoch) {
  if (state.revCursor === null) return;
  const cursor = await catchUpByRev(
    call,
    state.revCursor,
    (page) => {
      for (const message of page) applyUpdate(message);
    },
    () => epoch !== state.epoch,
  );
  if (cursor !== null) state.revCursor = cursor;
}

/**
 * With no message seen yet there is no `sync` cursor, and syncing from 0 would fetch every
 * room's whole history. Every conversation loaded so far was empty, so loading them afresh
 * is cheap and misses nothing.
 */
function forgetEmptyConversations() {
  for (const conversation of state.conversations.values()) {
    if (conversation.messages.size === 0) conversation.loaded = false;
  }
}

// -- receiving messages ------------------------------------------------------------

/**
 * Take in one MESSAGE from any source ("live", "sync", "page" or "ack"). Messages are
 * merged by id (the copy with the higher rev wins), so whatever arrives twice is shown once.
 */
function receive(message, source) {
  if (message.id > state.highestSeen) state.highestSeen = message.id;
  if ((source === "live" || source === "ack") && (state.liveFloor === 0 || message.id < state.liveFloor)) {
    state.liveFloor = message.id;
  }
  if ((source === "live" || source === "ack") && state.revCursor === null && revOf(message) > 0) {
    // The first change this page saw: everything before it was already in whatever it loaded.
    state.revCursor = revOf(message) - 1;
  }
  const conversation = conversationOf(message);
  const mine = message.sender.id === me.id;
  const isCurrent = conversation === state.current;
  noteLast(conversation, message);
  knowUser(message.sender);
  knowUser(message.recipient);
  if (mine && message.client_id) settle(message.client_id, conversation);
  let order = false;
  if (message.id > conversation.lastActivity) {
    conversation.lastActivity = message.id;
    order = conversation.kind === "dm";
  }
  if (conversation.kind === "dm" && !conversation.listed) {
    conversation.listed = true;
    order = true;
  }

  // The open conversation keeps what arrives even before its first page is in, so an
  // acknowledged message never vanishes from view while that page is on its way.
  if (conversation.loaded || conversation.loading || isCurrent) {
    const change = mergeInto(conversation.messages, message);
    if (isCurrent && change !== "unchanged") {
      list.upsert(conversation.messages.get(message.id), { fromOthers: !mine && source === "live" });
    }
  }

  const firstTime = !state.counted.has(message.id);
  state.counted.add(message.id);
  // Counts come from the server's `session` (rooms, and DMs where it lists them); only what
  // arrives after it adds to them.
  const counts = source === "live" || (source === "sync" && conversation.kind === "dm" && !state.sessionCountsDms);
  if (firstTime && source === "live" && !mine && !message.deleted && conversation.kind === "dm") {
    notifier.notify(message.sender.username, previewText(message, me.id), conversation.key, () => navigate(conversation));
  }
  if (firstTime && counts && !mine && !message.deleted) {
    if (!isCurrent) {
      conversation.unread += 1;
      order = true;
    } else if (document.visibilityState !== "visible") {
      state.hiddenUnread += 1;
      order = true;
    }
  }
  if (order) renderSidebar();
  if (message.room) clearTyper(message.room, message.sender.id);
  if (isCurrent && source !== "page") scheduleMarkRead();
}

/** A changed message (edit, deletion, reaction): replace the held copy if this one is newer. */
function applyUpdate(message) {
  if (!message || !Number.isInteger(message.id)) return;
  if (revOf(message) > 0 && state.revCursor === null) state.revCursor = revOf(message) - 1;
  const conversation = conversationOf(message);
  if (conversation.last?.id === message.id) noteLast(conversation, message);
  if (!conversation.messages.has(message.id)) return;
  const change = mergeInto(conversation.messages, message);
  if (change === "updated" && conversation === state.current) {
    list.upsert(conversation.messages.get(message.id), { follow: false });
  }
}

/** An acknowledged copy of an outbox entry arrived: the entry is done. */
function settle(clientId, conversation) {
  if (!outbox.remove(clientId)) return false;
  if (conversation === state.current) list.removePending(clientId);
  return true;
}

let markReadTimer = null;
function scheduleMarkRead() {
  clearTimeout(markReadTimer);
  markReadTimer = setTimeout(markRead, 200);
}

/** Tell the server how far the open conversation has been read, so counts survive a reload. */
function markRead() {
  const conversation = state.current;
  if (!conversation) return;
  if (document.visibilityState === "visible" && state.hiddenUnread) {
    state.hiddenUnread = 0;
    renderUnreadTotal();
  }
  if (conversation.unread || conversation.mentions) {
    conversation.unread = 0;
    conversation.mentions = 0;
    renderSidebar();
  }
  if (!state.ready || document.visibilityState !== "visible") return;
  if (conversation.kind === "room" && !state.rooms.has(conversation.name)) return;
  const newest = conversation.newestId();
  if (!newest || newest <= conversation.readSent) return;
  conversation.readSent = newest;
  call("read", { ...target(conversation), id: newest })
    .then((ack) => {
      if (!ack.ok) {
        // A server without DM read markers answers `invalid`: asking again would not help.
        if (conversation.kind === "room") conversation.readSent = 0;
        return;
      }
      if (Number.isInteger(ack.last_read_id)) conversation.lastReadId = ack.last_read_id;
      renderSidebar();
    })
    .catch(() => {
      conversation.readSent = 0;
    });
}

// -- sending: the outbox -----------------------------------------------------------

let flushing = false;
let flushAgain = false;
let resendTimer = null;
let countdownTimer = null;

function composeAndSend() {
  const conversation = state.current;
  if (conversation.missing || ui.input.disabled) return;
  const body = ui.input.value.trim();
  if (body.length > BODY_LIMIT) {
    renderCharCount();
    return;
  }
  if (tray.busy) {
    tray.error.textContent = "Wait until the files have finished uploading.";
    return;
  }
  const attachments = tray.ids();
  if (!body && !attachments.length) return;
  tray.clear();
  const entry = outbox.add({
    client_id: newClientId(),
    kind: conversation.kind,
    to: conversation.name,
    body,
    attachments,
    reply_to: state.replyTo ? state.replyTo.id : null,
    created_at: new Date().toISOString(),
    status: "sending",
    error: null,
    attempts: 0,
  });
  ui.input.value = "";
  clearDraft(conversation);
  renderCharCount();
  cancelReply();
  closeSuggestions();
  stopTyping();
  list.addPending(entry, { follow: false });
  list.scrollToBottom();
  flushOutbox();
}

/**
 * Send every waiting entry, oldest first and one at a time so they keep their order.
 * Runs whenever something is queued and after every (re)connect; a repeated client_id
 * is answered with the stored message, so resending is always safe.
 */
async function flushOutbox() {
  if (flushing) {
    flushAgain = true;
    return;
  }
  flushing = true;
  try {
    do {
      flushAgain = false;
      for (const entry of outbox.all()) {
        if (!state.ready) return;
        if (!outbox.get(entry.client_id) || entry.status === "failed") continue;
        if (entry.status === "waiting") {
          const wait = entry.retry_at - Date.now();
          if (wait > 0) {
            // Later entries wait too, so the order holds.
            clearTimeout(resendTimer);
            resendTimer = setTimeout(flushOutbox, wait);
            return;
          }
        }
        if (!(await sendEntry(entry))) {
          clearTimeout(resendTimer);
          resendTimer = setTimeout(flushOutbox, RESEND_DELAY_MS);
          return;
        }
        if (outbox.get(entry.client_id)?.status === "waiting") {
          flushAgain = true;
          break;
        }
      }
    } while (flushAgain);
  } finally {
    flushing = false;
  }
}

/** One attempt; false when no answer came (it stays queued and is tried again). */
async function sendEntry(entry) {
  const payload =
    entry.kind === "room"
      ? { room: entry.to, body: entry.body, client_id: entry.client_id }
      : { to_user: entry.to, body: entry.body, client_id: entry.client_id };
  if (entry.reply_to) payload.reply_to = entry.reply_to;
  if (entry.attachments?.length) payload.attachments = entry.attachments;
  let ack;
  try {
    ack = await call(entry.kind === "room" ? "message" : "dm", payload);
  } catch {
    return false;
  }
  const conversation = getConversation(entry.kind, entry.to);
  if (ack.ok) {
    receive(ack.message, "ack");
    settle(entry.client_id, conversation);
  } else if (ack.error?.code === "rate_limited") {
    const attempts = (entry.attempts || 0) + 1;
    const waiting = outbox.update(entry.client_id, {
      status: "waiting",
      attempts,
      retry_at: Date.now() + rateLimitDelayMs(attempts),
    });
    if (waiting && state.current === conversation) list.addPending(waiting, { follow: false });
    startCountdowns();
  } else {
    const failed = outbox.update(entry.client_id, { status: "failed", error: ack.error });
    if (failed && state.current === conversation) list.addPending(failed);
  }
  return true;
}

function startCountdowns() {
  if (countdownTimer) return;
  countdownTimer = setInterval(() => {
    list.tickCountdowns();
    if (!outbox.all().some((entry) => entry.status === "waiting")) {
      clearInterval(countdownTimer);
      countdownTimer = null;
    }
  }, 1000);
}

function retry(clientId) {
  const entry = outbox.update(clientId, { status: "sending", error: null, attempts: 0 });
  if (!entry) return;
  if (state.current === getConversation(entry.kind, entry.to)) list.addPending(entry, { follow: false });
  flushOutbox();
}

function editFailed(clientId) {
  const entry = outbox.get(clientId);
  if (!entry || entry.status !== "failed") return;
  outbox.remove(clientId);
  list.removePending(clientId);
  ui.input.value = entry.body;
  renderCharCount();
  ui.input.focus();
}

// -- editing, deleting, reacting, replying -----------------------------------------

async function saveEdit(message, body) {
  if (!state.ready) return "Not connected; try again in a moment.";
  try {
    const ack = await call("edit", { id: message.id, body });
    if (!ack.ok) return ack.error.message;
    applyUpdate(ack.message);
    return null;
  } catch (error) {
    return `The server did not answer (${error.message}).`;
  }
}

const confirmDialog = $("confirm-dialog");
let confirmAction = null;

function confirmDelete(message) {
  const own = message.sender.id === me.id;
  $("confirm-title").textContent = "Delete message?";
  $("confirm-text").textContent = own
    ? `“${snippet(message)}” will be deleted for everyone.`
    : `“${snippet(message)}” by ${message.sender.username} will be deleted for everyone (as an admin).`;
  $("confirm-error").textContent = "";
  confirmAction = async () => {
    try {
      const ack = own ? await call("delete", { id: message.id }) : await adminCall("delete_message", { id: message.id });
      if (!ack.ok) return ack.error.message;
      if (ack.message) applyUpdate(ack.message);
      else applyUpdate(asDeleted(message, revOf(message) + 1));
      return null;
    } catch (error) {
      return `The server did not answer (${error.message}).`;
    }
  };
  openDialog(confirmDialog);
  $("confirm-ok").focus();
}

$("confirm-ok").addEventListener("click", async () => {
  if (!confirmAction) return;
  const problem = await confirmAction();
  if (problem) {
    $("confirm-error").textContent = problem;
    return;
  }
  confirmAction = null;
  closeDialog(confirmDialog);
});

function adminCall(event, payload) {
  if (!adminSocket) adminSocket = socket.io.socket("/admin");
  if (!adminSocket.active) adminSocket.connect();
  return adminSocket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
}

async function react(message, emoji, active) {
  if (!state.ready) return;
  try {
    const ack = await call("react", { id: message.id, emoji, active });
    if (!ack.ok) {
      ui.listError.textContent = ack.error.message;
      return;
    }
    applyUpdate(ack.message);
  } catch (error) {
    reportCallFailure(error);
  }
}

let pickerFor = null;
let pickerOpener = null;

function openEmojiPicker(message, opener) {
  pickerFor = message;
  pickerOpener = opener;
  const picker = ui.emojiPicker;
  picker.replaceChildren(
    ...REACTION_CHOICES.map((emoji) =>
      el(
        "button",
        {
          type: "button",
          "aria-label": `React with ${emoji}`,
          on: {
            click: () => {
              const mine = (pickerFor.reactions || []).some(
                (reaction) =>
                  reaction.emoji === emoji && reaction.users.some((name) => name.toLowerCase() === me.username.toLowerCase()),
              );
              const target = pickerFor;
              closeEmojiPicker();
              react(target, emoji, !mine);
            },
          },
        },
        emoji,
      ),
    ),
  );
  picker.hidden = false;
  const box = opener.getBoundingClientRect();
  const width = picker.offsetWidth;
  picker.style.left = `${Math.max(8, Math.min(window.innerWidth - width - 8, box.right - width))}px`;
  picker.style.top = `${Math.max(8, box.top - picker.offsetHeight - 6)}px`;
  picker.querySelector("button").focus();
}

function closeEmojiPicker({ restoreFocus = false } = {}) {
  if (ui.emojiPicker.hidden) return false;
  ui.emojiPicker.hidden = true;
  if (restoreFocus && pickerOpener?.isConnected) pickerOpener.focus();
  pickerFor = null;
  pickerOpener = null;
  return true;
}

function startReply(message) {
  state.replyTo = message;
  ui.replySender.textContent = message.sender.username;
  ui.replySnippet.textContent = snippet(message);
  ui.replyPreview.hidden = false;
  ui.input.focus();
}

function cancelReply() {
  state.replyTo = null;
  ui.replyPreview.hidden = true;
}

/** Show the message a reply quotes, loading older pages when it is not loaded yet. */
async function jumpTo(id) {
  const conversation = state.current;
  for (let page = 0; page <= JUMP_PAGES; page += 1) {
    if (conversation !== state.current) return;
    if (list.highlight(id)) return;
    if (!conversation.hasMore || !(await loadOlder())) break;
  }
  ui.listError.textContent = "The original message is too far back to show.";
}

// -- drafts, the character counter and @-completion ------------------------------------

function draftKey(conversation) {
  return `switchboard:draft:${me.id}:${conversation.key}`;
}

function saveDraft(conversation) {
  try {
    const text = ui.input.value;
    if (text.trim()) localStorage.setItem(draftKey(conversation), text);
    else localStorage.removeItem(draftKey(conversation));
  } catch {
    // Without storage drafts last as long as the page.
  }
}

function restoreDraft(conversation) {
  let text = "";
  try {
    text = localStorage.getItem(draftKey(conversation)) || "";
  } catch {
    text = "";
  }
  ui.input.value = text;
  renderCharCount();
}

function clearDraft(conversation) {
  try {
    localStorage.removeItem(draftKey(conversation));
  } catch {
    // Nothing stored.
  }
}

function renderCharCount() {
  const length = ui.input.value.length;
  const near = length >= COUNTER_FROM;
  ui.charCount.textContent = near ? `${length} / ${BODY_LIMIT}` : "";
  ui.charCount.classList.toggle("at-limit", length >= BODY_LIMIT);
}

let suggestionIndex = 0;
let suggestionMatch = null;
let suggestionMoved = false; // the reader picked with the arrow keys

function updateSuggestions() {
  const match = mentionAtCaret(ui.input.value, ui.input.selectionStart);
  if (!match) {
    closeSuggestions();
    return;
  }
  const query = match.query.toLowerCase();
  const names = peopleNames()
    .filter((name) => name.toLowerCase().startsWith(query))
    .sort((a, b) => (b.toLowerCase() === query) - (a.toLowerCase() === query))
    .slice(0, 6);
  if (!names.length) {
    closeSuggestions();
    return;
  }
  suggestionMatch = match;
  suggestionIndex = Math.min(suggestionIndex, names.length - 1);
  ui.suggestions.replaceChildren(
    ...names.map((name, index) =>
      el(
        "li",
        {
          id: `mention-option-${index}`,
          role: "option",
          "aria-selected": String(index === suggestionIndex),
          dataset: { name },
          on: {
            mousedown: (event) => {
              event.preventDefault();
              acceptSuggestion(name);
            },
          },
        },
        `@${name}`,
      ),
    ),
  );
  ui.suggestions.hidden = false;
  ui.input.setAttribute("aria-activedescendant", `mention-option-${suggestionIndex}`);
}

function moveSuggestion(step) {
  suggestionMoved = true;
  const options = ui.suggestions.querySelectorAll("li");
  suggestionIndex = (suggestionIndex + step + options.length) % options.length;
  options.forEach((option, index) => option.setAttribute("aria-selected", String(index === suggestionIndex)));
  ui.input.setAttribute("aria-activedescendant", `mention-option-${suggestionIndex}`);
}

function acceptSuggestion(name) {
  const match = suggestionMatch;
  if (!match) return;
  const value = ui.input.value;
  const end = match.start + 1 + match.query.length;
  const inserted = `@${name} `;
  ui.input.value = value.slice(0, match.start) + inserted + value.slice(end);
  const caret = match.start + inserted.length;
  ui.input.setSelectionRange(caret, caret);
  closeSuggestions();
  ui.input.focus();
  saveDraft(state.current);
}

function closeSuggestions() {
  const wasOpen = !ui.suggestions.hidden;
  ui.suggestions.hidden = true;
  ui.suggestions.replaceChildren();
  suggestionMatch = null;
  suggestionIndex = 0;
  suggestionMoved = false;
  ui.input.removeAttribute("aria-activedescendant");
  return wasOpen;
}

// -- typing ------------------------------------------------------------------------

let typingRoom = null;
let typingSentAt = 0;
let typingIdleTimer = null;

function noteTyping() {
  const conversation = state.current;
  if (conversation.kind !== "room" || !state.ready || !ui.input.value.trim()) return;
  const now = Date.now();
  if (typingRoom !== conversation.name || now - typingSentAt > TYPING_REFRESH_MS) {
    typingRoom = conversation.name;
    typingSentAt = now;
    socket.emit("typing", { room: conversation.name, active: true });
  }
  clearTimeout(typingIdleTimer);
  typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  clearTimeout(typingIdleTimer);
  if (typingRoom && state.ready) socket.emit("typing", { room: typingRoom, active: false });
  typingRoom = null;
  typingSentAt = 0;
}

function onTyping({ room, user, active }) {
  if (!room || !user || user.id === me.id) return;
  if (!active) {
    clearTyper(room, user.id);
    return;
  }
  const typers = state.typers.get(room) || new Map();
  state.typers.set(room, typers);
  clearTimeout(typers.get(user.id)?.timer);
  typers.set(user.id, { user, timer: setTimeout(() => clearTyper(room, user.id), TYPING_EXPIRY_MS) });
  renderTyping();
}

function clearTyper(room, userId) {
  const typers = state.typers.get(room);
  if (!typers?.has(userId)) return;
  clearTimeout(typers.get(userId).timer);
  typers.delete(userId);
  renderTyping();
}

function renderTyping() {
  const conversation = state.current;
  const typers = conversation.kind === "room" ? state.typers.get(conversation.name) : null;
  const names = typers ? [...typers.values()].map((typer) => typer.user.username).sort() : [];
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = "Several people are typing…";
  ui.typing.textContent = text;
}

// -- connection state --------------------------------------------------------------

function setStatus(kind, text) {
  root.dataset.state = kind;
  ui.status.textContent = text;
  ui.status.className = `connection-status status-${kind}`;
}

// socket.io-client delivers events that came with the handshake (our `session`) before
// `connect` itself, so `connect` may find the page ready already.
socket.on("connect", () => {
  if (!state.kicked && !state.ready) setStatus("connecting", "Connecting…");
});

socket.on("session", async (session) => {
  state.epoch += 1;
  const epoch = state.epoch;
  state.ready = true;
  setStatus("connected", "Connected");
  // Errors from before this connection no longer hold.
  ui.listError.textContent = "";
  ui.createMissingError.textContent = "";
  roomsError.textContent = "";
  state.rooms = new Set(session.rooms.map((room) => room.name));
  for (const room of session.rooms) noteRoom(room);
  for (const conversation of state.conversations.values()) {
    conversation.readSent = 0;
    if (conversation.kind === "room" && session.unread && conversation.name in session.unread) {
      conversation.unread = conversation === state.current ? 0 : session.unread[conversation.name];
      if (conversation === state.current && !conversation.loaded) conversation.unreadAtOpen = session.unread[conversation.name];
    }
    if (conversation.kind === "room" && session.mentions && typeof session.mentions === "object") {
      conversation.mentions = conversation === state.current ? 0 : session.mentions[conversation.name] || 0;
    }
  }
  state.sessionCountsDms = Array.isArray(session.dms);
  for (const entry of Array.isArray(session.dms) ? session.dms : []) {
    if (!entry?.user?.username) continue;
    const conversation = getConversation("dm", entry.user.username);
    knowUser(entry.user);
    conversation.listed = true;
    if (entry.last?.id) {
      conversation.lastActivity = Math.max(conversation.lastActivity, entry.last.id);
      noteLast(conversation, entry.last);
    }
    conversation.unread = conversation === state.current ? 0 : Number(entry.unread) || 0;
    if (conversation === state.current && !conversation.loaded) conversation.unreadAtOpen = Number(entry.unread) || 0;
  }
  renderHeader();
  renderSidebar();
  refreshOnline(epoch);
  const reconnect = state.connectedBefore;
  state.connectedBefore = true;
  try {
    // What was typed into a room before the connection came up needs the membership first.
    const conversation = state.current;
    if (conversation.kind === "room" && !state.rooms.has(conversation.name)) {
      await enterExistingRoom(conversation, epoch);
    }
    if (epoch !== state.epoch) return;
    flushOutbox();
    // Id 0 is a real cursor (everything), so "no cursor yet" is null.
    const from = state.syncCursor > 0 ? state.syncCursor : state.liveFloor > 0 ? state.liveFloor - 1 : null;
    if (reconnect && from !== null) await catchUp(epoch, from);
    else if (reconnect) forgetEmptyConversations();
    if (reconnect && epoch === state.epoch) await catchUpChanges(epoch);
    if (epoch === state.epoch) await prepare(state.current, epoch);
    if (epoch === state.epoch && state.syncCursor === 0) state.syncCursor = state.highestSeen;
  } catch (error) {
    reportCallFailure(error);
  }
});

async function refreshOnline(epoch) {
  try {
    const ack = await call("who", {});
    if (!ack.ok || epoch !== state.epoch) return;
    state.online = new Map(ack.users.map((entry) => [entry.user.id, entry.user]));
    for (const user of state.online.values()) knowUser(user);
    renderOnline();
  } catch {
    // Disconnected again; the next session asks anew.
  }
}

socket.on("disconnect", (reason) => {
  state.ready = false;
  state.epoch += 1;
  typingRoom = null;
  if (state.kicked) return;
  if (socket.active) setStatus("reconnecting", "Reconnecting…");
  else if (reason === "io server disconnect") setStatus("disconnected", "Disconnected by the server.");
  else setStatus("disconnected", "Disconnected.");
});

socket.on("connect_error", (error) => {
  if (state.kicked && error.message !== "banned") return;
  if (socket.active) {
    setStatus("reconnecting", "Reconnecting…");
    return;
  }
  // The server refused this user: retrying would not help.
  if (error.message === "unauthorized") {
    setStatus("disconnected", "Disconnected: your session has ended. ");
    ui.status.append(el("a", { href: `/login?next=${encodeURIComponent("/")}` }, "Sign in again"));
  } else if (error.message === "banned") {
    showKicked("banned");
  } else {
    setStatus("disconnected", `Disconnected: ${error.message}`);
  }
});

function showKicked(reason) {
  state.kicked = reason;
  const banned = reason === "banned";
  setStatus("disconnected", `Disconnected: ${reason}`);
  ui.kickedTitle.textContent = banned ? "Your account has been banned" : "You were removed from the chat";
  ui.kickedReason.textContent = banned
    ? "An admin banned this account, so it can no longer read or send messages. Ask an admin if you think this is a mistake."
    : `An admin disconnected you: ${reason}. You can reconnect when you are ready.`;
  ui.reconnect.hidden = banned;
  ui.kicked.hidden = false;
  setComposerEnabled(false);
  if (!banned) ui.reconnect.focus();
}

let signingOut = false;
document.querySelector('form[action="/logout"]')?.addEventListener("submit", () => {
  signingOut = true;
});

socket.on("kicked", ({ reason } = {}) => {
  // The server disconnects right after; this page must not dial back in on its own.
  socket.io.reconnection(false);
  if (reason === "signed out") {
    // Signing out on any device signs out every device: this page's session is over too.
    // The page whose own Sign out button did it is already on its way to /login.
    if (!signingOut) window.location.assign("/");
    return;
  }
  showKicked(String(reason || "removed by an admin"));
});

ui.reconnect.addEventListener("click", () => {
  state.kicked = null;
  ui.kicked.hidden = true;
  setComposerEnabled(!state.current.missing);
  setStatus("connecting", "Connecting…");
  socket.io.reconnection(true);
  socket.connect();
  ui.input.focus();
});

socket.on("message", (message) => receive(message, "live"));
socket.on("dm", (message) => receive(message, "live"));
socket.on("typing", onTyping);
socket.on("message_updated", (message) => applyUpdate(message));

socket.on("mention", ({ message } = {}) => {
  if (!message?.room) return;
  const conversation = getConversation("room", message.room);
  notifier.notify(`${message.sender.username} in #${message.room}`, previewText(message, me.id), conversation.key, () =>
    navigate(conversation),
  );
  if (conversation === state.current && document.visibilityState === "visible") return;
  if (conversation !== state.current) {
    conversation.mentions += 1;
    renderSidebar();
  }
});

socket.on("room_joined", ({ room } = {}) => {
  if (!room?.name) return;
  noteRoom(room);
  state.rooms.add(room.name);
  renderSidebar();
  if (state.current?.name === room.name && state.current.kind === "room") {
    renderHeader();
    if (state.ready) prepare(state.current, state.epoch);
  }
});

socket.on("room_updated", ({ room } = {}) => {
  const conversation = noteRoom(room);
  if (!conversation) return;
  renderSidebar();
  if (conversation === state.current) renderHeader();
});

socket.on("presence", ({ user, online }) => {
  if (!user) return;
  if (online) {
    state.online.set(user.id, user);
    knowUser(user);
  } else state.online.delete(user.id);
  renderOnline();
});

socket.on("message_deleted", ({ id, room }) => {
  // A deleted direct message comes with room null: look for it among the DM conversations.
  const conversation = room
    ? state.conversations.get(conversationKey("room", room))
    : [...state.conversations.values()].find((c) => c.kind === "dm" && (c.messages.has(id) || c.last?.id === id));
  if (conversation?.last?.id === id && !conversation.last.deleted) {
    noteLast(conversation, asDeleted(conversation.last), { force: true });
  }
  const message = conversation?.messages.get(id);
  if (!message || message.deleted) return;
  // `message_updated` (or sync) brings the server's own copy with its rev; this keeps the place.
  conversation.messages.set(id, asDeleted(message));
  if (conversation === state.current) list.upsert(conversation.messages.get(id), { follow: false });
});

socket.on("announcement", ({ body, from, created_at: createdAt } = {}) => {
  ui.announcement.replaceChildren(
    el(
      "p",
      { className: "announcement-meta" },
      el("strong", {}, "Announcement"),
      from ? ` from ${from.username}` : "",
      createdAt ? " · " : "",
      createdAt ? timeElement(createdAt) : "",
    ),
    el("p", { className: "announcement-body" }, body ?? ""),
    el(
      "button",
      { type: "button", className: "secondary", on: { click: () => (ui.announcement.hidden = true) } },
      "Dismiss",
    ),
  );
  ui.announcement.hidden = false;
});

// -- dialogs -----------------------------------------------------------------------

function openDialog(dialog) {
  closeSidebar({ focusComposer: false });
  if (!dialog.open) dialog.showModal();
}

function closeDialog(dialog) {
  if (dialog.open) dialog.close();
}

for (const dialog of document.querySelectorAll("dialog")) {
  // A click on the dimmed backdrop lands on the dialog itself: close it.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) closeDialog(dialog);
  });
  for (const button of dialog.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => closeDialog(dialog));
  }
  dialog.addEventListener("close", () => {
    if (!document.querySelector("dialog[open]")) focusComposer();
  });
}

// The room directory: search, join, create (public or private).
const roomsDialog = $("rooms-dialog");
const roomsSearch = $("rooms-search");
const roomsResults = $("rooms-results");
const roomsCreate = $("rooms-create");
const roomsCreateButton = $("rooms-create-button");
const roomsCreatePrivate = $("rooms-create-private");
const roomsError = $("rooms-error");
let roomsQueryTimer = null;
let roomsQuerySeq = 0;

$("browse-rooms").addEventListener("click", () => {
  roomsSearch.value = "";
  roomsError.textContent = "";
  roomsCreatePrivate.checked = false;
  openDialog(roomsDialog);
  roomsSearch.focus();
  searchRooms();
});

roomsSearch.addEventListener("input", () => {
  clearTimeout(roomsQueryTimer);
  roomsQueryTimer = setTimeout(searchRooms, 150);
});

$("rooms-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = roomsSearch.value.trim();
  const exact = roomsResults.querySelector(`[data-room="${CSS.escape(name)}"] button`);
  if (exact) exact.click();
  else if (!roomsCreate.hidden) roomsCreateButton.click();
});

async function searchRooms() {
  const seq = ++roomsQuerySeq;
  const query = roomsSearch.value.trim().toLowerCase();
  roomsError.textContent = "";
  let found = null;
  if (state.ready) {
    try {
      const ack = await call("rooms", query ? { q: query } : {});
      if (ack.ok) found = ack.rooms;
    } catch {
      found = null;
    }
  }
  if (seq !== roomsQuerySeq) return;
  // Without a directory from the server, the rooms this user is in are still listed.
  const rooms =
    found ??
    roomConversations()
      .map((c) => c.room || { name: c.name, members: null, online: null, topic: "", private: false })
      .filter((room) => room.name.includes(query));
  roomsResults.replaceChildren(...rooms.map(roomResult));
  $("rooms-empty").hidden = rooms.length > 0 || !query;
  const exact = rooms.some((room) => room.name === query);
  roomsCreate.hidden = exact || !ROOM_NAME.test(query);
  roomsCreateButton.textContent = `Create #${query}`;
  if (!ROOM_NAME.test(query) && query) roomsError.textContent = "That is not a valid room name.";
}

function roomResult(room) {
  const member = state.rooms.has(room.name);
  const details = [];
  if (Number.isInteger(room.members)) details.push(`${room.members} ${room.members === 1 ? "member" : "members"}`);
  if (Number.isInteger(room.online)) details.push(`${room.online} online`);
  return el(
    "li",
    { dataset: { room: room.name } },
    el(
      "div",
      { className: "room-result-text" },
      el(
        "span",
        { className: "room-result-name" },
        room.private ? el("span", { className: "lock", "aria-hidden": "true" }) : null,
        `#${room.name}`,
        room.private ? el("span", { className: "visually-hidden" }, " (private)") : null,
      ),
      room.topic ? el("span", { className: "room-result-topic" }, room.topic) : null,
      el("span", { className: "hint" }, details.join(" · ")),
    ),
    el(
      "button",
      {
        type: "button",
        className: member ? "secondary" : "primary",
        on: { click: () => joinFromDirectory(room.name, {}) },
      },
      member ? `Open #${room.name}` : `Join #${room.name}`,
    ),
  );
}

roomsCreateButton.addEventListener("click", () => {
  const name = roomsSearch.value.trim().toLowerCase();
  if (!ROOM_NAME.test(name)) return;
  joinFromDirectory(name, roomsCreatePrivate.checked ? { private: true } : {});
});

async function joinFromDirectory(name, extra) {
  roomsError.textContent = "";
  if (state.rooms.has(name)) {
    closeDialog(roomsDialog);
    navigate(getConversation("room", name));
    return;
  }
  if (!state.ready) {
    roomsError.textContent = "Not connected; try again in a moment.";
    return;
  }
  try {
    const ack = await joinRoom(name, extra);
    if (!ack.ok) {
      roomsError.textContent = ack.error.message;
      return;
    }
    closeDialog(roomsDialog);
    navigate(getConversation("room", ack.room.name));
  } catch (error) {
    roomsError.textContent = `The server did not answer (${error.message}).`;
  }
}

// "Create #name" where the address named a room that does not exist.
ui.createMissing.addEventListener("click", async () => {
  const conversation = state.current;
  if (!conversation.missing) return;
  ui.createMissingError.textContent = "";
  if (!state.ready) {
    ui.createMissingError.textContent = "Not connected; try again in a moment.";
    return;
  }
  try {
    const ack = await joinRoom(conversation.name, ui.createMissingPrivate.checked ? { private: true } : {});
    if (!ack.ok) {
      ui.createMissingError.textContent = ack.error.message;
      return;
    }
    ui.createMissingPrivate.checked = false;
    renderHeader();
    renderSidebar();
    ui.input.focus();
    markRead();
  } catch (error) {
    ui.createMissingError.textContent = `The server did not answer (${error.message}).`;
  }
});

// New direct message with anyone, online or not.
const dmDialog = $("dm-dialog");
$("new-message").addEventListener("click", () => {
  $("dm-to").value = "";
  $("dm-error").textContent = "";
  openDialog(dmDialog);
  $("dm-to").focus();
});

$("dm-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("dm-to").value.trim().replace(/^@/, "");
  const error = $("dm-error");
  error.textContent = "";
  if (!USERNAME.test(name)) {
    error.textContent = "Usernames are 3-32 characters: letters A-Z, digits, _ . -";
    return;
  }
  if (!state.ready) {
    error.textContent = "Not connected; try again in a moment.";
    return;
  }
  try {
    // Asking for the conversation's history tells whether the user exists.
    const ack = await call("dm_history", { user: name, limit: 1 });
    if (!ack.ok) {
      error.textContent = ack.error.code === "not_found" ? `There is no user named ${name}.` : ack.error.message;
      return;
    }
    const canonical =
      ack.messages[0] &&
      [ack.messages[0].sender, ack.messages[0].recipient].find(
        (user) => user && user.username.toLowerCase() === name.toLowerCase(),
      );
    closeDialog(dmDialog);
    navigate(getConversation("dm", canonical ? canonical.username : name));
  } catch (problem) {
    error.textContent = `The server did not answer (${problem.message}).`;
  }
});

// Invite someone to the open room.
const inviteDialog = $("invite-dialog");
$("invite-button").addEventListener("click", () => {
  ui.roomMenu.open = false;
  $("invite-user").value = "";
  $("invite-error").textContent = "";
  $("invite-done").textContent = "";
  $("invite-dialog-title").textContent = `Invite people to ${state.current.title}`;
  openDialog(inviteDialog);
  $("invite-user").focus();
});

$("invite-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("invite-user").value.trim().replace(/^@/, "");
  const error = $("invite-error");
  error.textContent = "";
  $("invite-done").textContent = "";
  if (!USERNAME.test(name)) {
    error.textContent = "Usernames are 3-32 characters: letters A-Z, digits, _ . -";
    return;
  }
  try {
    const ack = await call("invite", { room: state.current.name, user: name });
    if (!ack.ok) {
      error.textContent = ack.error.message;
      return;
    }
    noteRoom(ack.room);
    renderHeader();
    $("invite-done").textContent = `${name} is now a member of #${ack.room.name}.`;
    $("invite-user").value = "";
  } catch (problem) {
    error.textContent = `The server did not answer (${problem.message}).`;
  }
});

// The room's topic, editable by its members.
const topicDialog = $("topic-dialog");
$("edit-topic").addEventListener("click", () => {
  ui.roomMenu.open = false;
  $("topic-input").value = state.current.room?.topic || "";
  $("topic-error").textContent = "";
  openDialog(topicDialog);
  $("topic-input").focus();
});

$("topic-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("topic-error");
  error.textContent = "";
  try {
    const ack = await call("topic", { room: state.current.name, topic: $("topic-input").value.trim() });
    if (!ack.ok) {
      error.textContent = ack.error.message;
      return;
    }
    noteRoom(ack.room);
    renderHeader();
    closeDialog(topicDialog);
  } catch (problem) {
    error.textContent = `The server did not answer (${problem.message}).`;
  }
});

// The quick switcher (Ctrl+K).
const switcherDialog = $("switcher-dialog");
const switcherInput = $("switcher-input");
const switcherResults = $("switcher-results");

function openSwitcher() {
  switcherInput.value = "";
  renderSwitcher();
  openDialog(switcherDialog);
  switcherInput.focus();
}

function switcherCandidates() {
  const query = switcherInput.value.trim().toLowerCase().replace(/^[#@]/, "");
  return [...roomConversations(), ...dmConversations()].filter((c) => c.name.toLowerCase().includes(query)).slice(0, 12);
}

function renderSwitcher() {
  switcherResults.replaceChildren(
    ...switcherCandidates().map((conversation) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            on: {
              click: () => {
                closeDialog(switcherDialog);
                navigate(conversation);
              },
            },
          },
          conversation.title,
          conversation.unread ? el("span", { className: "unread" }, String(conversation.unread)) : null,
        ),
      ),
    ),
  );
}

switcherInput.addEventListener("input", renderSwitcher);
$("switcher-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const [first] = switcherCandidates();
  if (!first) return;
  closeDialog(switcherDialog);
  navigate(first);
});

// -- the page's controls -----------------------------------------------------------

ui.input.addEventListener("keydown", (event) => {
  if (!ui.suggestions.hidden) {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      moveSuggestion(event.key === "ArrowDown" ? 1 : -1);
      return;
    }
    const selected = ui.suggestions.querySelector('[aria-selected="true"]');
    // A name typed out in full is sent as it is on Enter; Tab (or a choice made with the arrows) completes.
    const typedInFull =
      suggestionMatch && !suggestionMoved && selected?.dataset.name.toLowerCase() === suggestionMatch.query.toLowerCase();
    if ((event.key === "Enter" && !event.shiftKey && !typedInFull) || event.key === "Tab") {
      event.preventDefault();
      if (selected) acceptSuggestion(selected.dataset.name);
      return;
    }
    if (event.key === "Enter") closeSuggestions();
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      closeSuggestions();
      return;
    }
  }
  if (event.key === "ArrowUp" && !ui.input.value && !event.altKey && !event.ctrlKey && !event.metaKey) {
    const last = list.lastOwnMessage();
    if (last) {
      event.preventDefault();
      list.startEdit(last.id);
    }
    return;
  }
  if (event.key === "Escape" && state.replyTo) {
    event.preventDefault();
    event.stopPropagation();
    cancelReply();
    return;
  }
  if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
  event.preventDefault();
  composeAndSend();
});
ui.input.addEventListener("input", () => {
  noteTyping();
  renderCharCount();
  saveDraft(state.current);
  updateSuggestions();
});
ui.input.addEventListener("click", updateSuggestions);
ui.input.addEventListener("blur", () => setTimeout(closeSuggestions, 150));
ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  composeAndSend();
  ui.input.focus();
});
$("cancel-reply").addEventListener("click", () => {
  cancelReply();
  ui.input.focus();
});

ui.leaveButton.addEventListener("click", async () => {
  ui.roomMenu.open = false;
  const conversation = state.current;
  if (conversation.kind !== "room" || !state.ready) return;
  try {
    const ack = await call("leave", { room: conversation.name });
    if (!ack.ok) {
      ui.listError.textContent = ack.error.message;
      return;
    }
    state.rooms.delete(conversation.name);
    state.conversations.delete(conversation.key);
    navigate(getConversation("room", GENERAL));
  } catch (error) {
    reportCallFailure(error);
  }
});

ui.olderButton.addEventListener("click", loadOlder);
ui.scroller.addEventListener("scroll", (event) => {
  if (event.currentTarget.scrollTop < LOAD_OLDER_PX) loadOlder();
});
ui.newBelow.addEventListener("click", () => {
  list.scrollToBottom();
  ui.input.focus();
});
ui.jumpUnread.addEventListener("click", () => {
  list.showFirstUnread();
  ui.input.focus();
});

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") markRead();
});

// The sidebar is a drawer on phones: a close button, Escape and a tap outside close it.
ui.sidebarToggle.addEventListener("click", () => {
  if (root.classList.contains("sidebar-open")) closeSidebar();
  else openSidebar();
});
$("sidebar-close").addEventListener("click", () => closeSidebar());
ui.backdrop.addEventListener("click", () => closeSidebar());

function openSidebar() {
  root.classList.add("sidebar-open");
  ui.backdrop.hidden = false;
  ui.sidebarToggle.setAttribute("aria-expanded", "true");
  (ui.sidebar.querySelector('[aria-current="page"]') || ui.sidebar.querySelector("a, button"))?.focus();
}

function closeSidebar({ focusComposer: refocus = true } = {}) {
  if (!root.classList.contains("sidebar-open")) return false;
  root.classList.remove("sidebar-open");
  ui.backdrop.hidden = true;
  ui.sidebarToggle.setAttribute("aria-expanded", "false");
  // Focus would otherwise stay on a link that just disappeared.
  if (refocus) focusComposer();
  return true;
}

function moveConversation(step) {
  const order = [...roomConversations(), ...dmConversations()];
  if (!order.length) return;
  const index = order.indexOf(state.current);
  navigate(order[(index + step + order.length) % order.length]);
}

document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === "k") {
    event.preventDefault();
    openSwitcher();
    return;
  }
  if (event.altKey && !event.ctrlKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
    if (document.querySelector("dialog[open]")) return;
    event.preventDefault();
    moveConversation(event.key === "ArrowDown" ? 1 : -1);
    return;
  }
  if (event.key === "Escape") {
    if (closeEmojiPicker({ restoreFocus: true })) return;
    if (ui.roomMenu.open) {
      ui.roomMenu.open = false;
      ui.roomMenu.querySelector("summary").focus();
      return;
    }
    if (closeSidebar()) return;
  }
});

document.addEventListener("click", (event) => {
  if (!ui.emojiPicker.hidden && !ui.emojiPicker.contains(event.target) && event.target !== pickerOpener) {
    closeEmojiPicker();
  }
  if (ui.roomMenu.open && !ui.roomMenu.contains(event.target)) ui.roomMenu.open = false;
});

window.addEventListener("hashchange", route);
window.addEventListener("pagehide", () => state.current && saveDraft(state.current));

for (const entry of outbox.all()) getConversation(entry.kind, entry.to);
if (outbox.all().some((entry) => entry.status === "waiting")) startCountdowns();
/** Open a conversation and, when given, show one of its messages (loading older pages as needed). */
async function openAt(conversation, messageId = null) {
  navigate(conversation);
  if (messageId === null) return;
  for (let wait = 0; wait < 100 && !(conversation.loaded && !conversation.loading); wait += 1) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (conversation === state.current) await jumpTo(messageId);
}

// Files to send with the next message, and message search in the top bar.
const tray = new AttachmentTray({
  composer: ui.composer,
  input: ui.input,
  dropZone: ui.composer.closest(".conversation") || ui.composer,
  call,
});
mountSearch({
  container: document.querySelector(".topbar"),
  call,
  me,
  open: (message) => openAt(conversationOf(message), message.id),
});

Object.assign(window.switchboard, {
  call,
  open: (kind, name, messageId = null) => openAt(getConversation(kind, name), messageId),
});
// The composer shows only once this script handles it, so nothing typed before is lost.
ui.composer.hidden = false;
route();
renderOnline();
