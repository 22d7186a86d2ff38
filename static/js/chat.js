// The chat page: rooms and direct messages over one socket, catch-up after every reconnect,
// and an outbox that keeps each message until the server has acknowledged it.
import { io } from "/static/vendor/socket.io.esm.min.js";
import { AttachmentTray } from "./attachments.js";
import { el, newClientId, timeElement } from "./dom.js";
import { MessageList } from "./message-list.js";
import { Outbox } from "./outbox.js";
import { mountSearch } from "./search.js";

const ACK_TIMEOUT_MS = 10000;
const RESEND_DELAY_MS = 3000;
const PAGE_SIZE = 50;
// Older history is fetched once the reader scrolls within this distance of the top.
const LOAD_OLDER_PX = 200;
const TYPING_REFRESH_MS = 3000;
const TYPING_IDLE_MS = 4000;
const TYPING_EXPIRY_MS = 8000;
const ROOM_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;
const GENERAL = "general";

const $ = (id) => document.getElementById(id);
const root = $("chat");
const me = JSON.parse(root.dataset.user);
const ui = {
  title: $("conversation-title"),
  status: $("connection-status"),
  roomList: $("room-list"),
  dmList: $("dm-list"),
  dmEmpty: $("dm-empty"),
  onlineList: $("online-list"),
  onlineCount: $("online-count"),
  joinForm: $("join-form"),
  joinInput: $("join-room"),
  joinError: $("join-error"),
  leaveButton: $("leave-room"),
  announcement: $("announcement"),
  listError: $("list-error"),
  typing: $("typing"),
  composer: $("composer"),
  composerLabel: $("composer-label"),
  input: $("composer-input"),
  sidebar: $("sidebar"),
  sidebarToggle: $("sidebar-toggle"),
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
    this.readSent = 0; // highest id this page has reported with `read`
    this.lastReadId = 0; // the marker as the server last confirmed it
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
  counted: new Set(), // message ids already weighed for unread counts
  justSent: new Set(), // ids acknowledged to this page, shown as "Sent"
  online: new Map(), // user id -> USER
  typers: new Map(), // room -> Map(user id -> {user, timer})
  kicked: null,
};

const outbox = new Outbox(me.id);
const dmPartnersKey = `switchboard:dms:${me.id}`;

const params = new URLSearchParams(location.search);
const socket = io(params.get("transport") === "polling" ? { transports: ["polling"] } : {});
window.switchboard = { socket, state, outbox, me };

const list = new MessageList({
  scroller: $("message-scroller"),
  list: $("messages"),
  olderButton: $("load-older"),
  olderNote: $("older-note"),
  me,
  onRetry: retry,
  onEdit: editFailed,
});

// -- conversations and the sidebar ------------------------------------------------

function getConversation(kind, name) {
  const key = conversationKey(kind, name);
  let conversation = state.conversations.get(key);
  if (!conversation) {
    conversation = new Conversation(kind, name);
    state.conversations.set(key, conversation);
    if (kind === "dm") rememberDmPartner(name);
  }
  return conversation;
}

function rememberDmPartner(name) {
  const partners = storedDmPartners();
  if (!partners.some((partner) => partner.toLowerCase() === name.toLowerCase())) {
    partners.push(name);
    try {
      localStorage.setItem(dmPartnersKey, JSON.stringify(partners));
    } catch {
      // Without storage the list lasts as long as the page.
    }
  }
}

function storedDmPartners() {
  try {
    const partners = JSON.parse(localStorage.getItem(dmPartnersKey) || "[]");
    return Array.isArray(partners) ? partners.filter((name) => typeof name === "string" && USERNAME.test(name)) : [];
  } catch {
    return [];
  }
}

function conversationOf(message) {
  if (message.room) return getConversation("room", message.room);
  const other = message.sender.id === me.id ? message.recipient : message.sender;
  return getConversation("dm", other.username);
}

function renderSidebar() {
  const rooms = [...state.conversations.values()]
    .filter((c) => c.kind === "room" && (state.rooms.has(c.name) || c === state.current))
    .sort((a, b) => a.name.localeCompare(b.name));
  const dms = [...state.conversations.values()]
    .filter((c) => c.kind === "dm")
    .sort((a, b) => a.name.toLowerCase().localeCompare(b.name.toLowerCase()));
  ui.roomList.replaceChildren(...rooms.map(sidebarItem));
  ui.dmList.replaceChildren(...dms.map(sidebarItem));
  ui.dmEmpty.hidden = dms.length > 0;
}

function sidebarItem(conversation) {
  const current = conversation === state.current;
  const link = el(
    "a",
    { href: conversation.hash, "aria-current": current ? "page" : null },
    el("span", { className: "conversation-name" }, conversation.title),
  );
  if (conversation.unread > 0 && !current) {
    link.append(
      el("span", { className: "unread", title: `${conversation.unread} unread` }, String(conversation.unread)),
      el("span", { className: "visually-hidden" }, " unread"),
    );
  }
  return el(
    "li",
    {
      className: conversation.unread > 0 && !current ? "has-unread" : "",
      dataset: {
        [conversation.kind === "room" ? "room" : "user"]: conversation.name,
        // The read marker the server confirmed, for anyone checking that reads are stored.
        ...(conversation.lastReadId ? { lastRead: String(conversation.lastReadId) } : {}),
      },
    },
    link,
  );
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
  closeSidebarOnPhone();
}

function openConversation(conversation) {
  if (state.current === conversation) return;
  stopTyping();
  state.current = conversation;
  conversation.unread = 0;
  ui.title.textContent = conversation.title;
  ui.composerLabel.textContent = `Message ${conversation.title}`;
  document.title = `${conversation.title} · Switchboard`;
  ui.leaveButton.hidden = conversation.kind !== "room" || conversation.name === GENERAL;
  ui.listError.textContent = "";
  showConversation();
  renderSidebar();
  renderTyping();
  if (state.ready) prepare(conversation, state.epoch);
}

function showConversation() {
  const conversation = state.current;
  list.show(conversation.sorted(), outbox.forConversation(conversation.kind, conversation.name));
  renderOlderState();
}

function renderOlderState() {
  const conversation = state.current;
  list.setOlderState({
    loaded: conversation.loaded,
    loading: conversation.loading || conversation.loadingOlder,
    hasMore: conversation.hasMore,
    title: conversation.title,
  });
}

/** Make sure the open conversation is joined and loaded, then mark it read. */
async function prepare(conversation, epoch) {
  try {
    if (conversation.kind === "room" && !state.rooms.has(conversation.name)) {
      await joinRoom(conversation.name);
      if (epoch !== state.epoch) return;
    }
    await loadLatest(conversation, epoch);
    if (epoch === state.epoch && conversation === state.current) {
      fillViewport(conversation);
      markRead();
    }
  } catch (error) {
    reportCallFailure(error);
  }
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

async function joinRoom(name) {
  const ack = await call("join", { room: name });
  if (!ack.ok) return ack;
  const conversation = getConversation("room", ack.room.name);
  state.rooms.add(ack.room.name);
  conversation.loading = true;
  for (const message of ack.messages) receive(message, "page");
  conversation.loading = false;
  if (!conversation.loaded) conversation.hasMore = ack.messages.length >= PAGE_SIZE;
  conversation.loaded = true;
  if (conversation === state.current) showConversation();
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
      if (conversation === state.current) ui.listError.textContent = ack.error.message;
      return;
    }
    for (const message of ack.messages) receive(message, "page");
    conversation.hasMore = ack.has_more;
    conversation.loaded = true;
  } finally {
    conversation.loading = false;
    if (conversation === state.current) showConversation();
  }
}

async function loadOlder() {
  const conversation = state.current;
  if (!state.ready || !conversation.loaded || conversation.loadingOlder || !conversation.hasMore) return;
  const before = conversation.oldestId();
  if (before === null) {
    conversation.hasMore = false;
    renderOlderState();
    return;
  }
  conversation.loadingOlder = true;
  renderOlderState();
  try {
    const event = conversation.kind === "room" ? "history" : "dm_history";
    const ack = await call(event, { ...target(conversation), before, limit: PAGE_SIZE });
    if (!ack.ok) {
      ui.listError.textContent = ack.error.message;
      return;
    }
    const older = ack.messages.filter((message) => !conversation.messages.has(message.id));
    for (const message of older) {
      conversation.messages.set(message.id, message);
      state.counted.add(message.id);
    }
    conversation.hasMore = ack.has_more;
    if (conversation === state.current) list.prependOlder(older);
  } catch (error) {
    reportCallFailure(error);
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
  const scroller = $("message-scroller");
  if (conversation === state.current && conversation.hasMore && scroller.scrollHeight <= scroller.clientHeight) {
    loadOlder();
  }
}

/** Catch up on everything missed while disconnected, one page of `sync` at a time. */
async function catchUp(epoch, from) {
  let after = from;
  while (epoch === state.epoch) {
    const ack = await call("sync", { after });
    if (!ack.ok || epoch !== state.epoch) return;
    for (const message of ack.messages) receive(message, "sync");
    if (ack.messages.length > 0) after = ack.messages[ack.messages.length - 1].id;
    state.syncCursor = after;
    if (!ack.has_more || ack.messages.length === 0) return;
  }
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
 * merged by id, so whatever arrives twice is shown once.
 */
function receive(message, source) {
  if (message.id > state.highestSeen) state.highestSeen = message.id;
  if ((source === "live" || source === "ack") && (state.liveFloor === 0 || message.id < state.liveFloor)) {
    state.liveFloor = message.id;
  }
  const conversation = conversationOf(message);
  const mine = message.sender.id === me.id;
  const isCurrent = conversation === state.current;
  if (mine && message.client_id && settle(message.client_id, conversation)) state.justSent.add(message.id);
  if (source === "ack") state.justSent.add(message.id);

  // The open conversation keeps what arrives even before its first page is in, so an
  // acknowledged message never vanishes from view while that page is on its way.
  if (conversation.loaded || conversation.loading || isCurrent) {
    conversation.messages.set(message.id, message);
    if (isCurrent) list.upsert(message, { justSent: state.justSent.has(message.id) });
  }

  const firstTime = !state.counted.has(message.id);
  state.counted.add(message.id);
  // Room counts come from the server's `session`; only what arrives after it adds to them.
  const counts = source === "live" || (source === "sync" && conversation.kind === "dm");
  if (firstTime && counts && !mine && !message.deleted && !isCurrent) {
    conversation.unread += 1;
    renderSidebar();
  } else if (conversation.kind === "dm" && !ui.dmList.querySelector(`[data-user="${CSS.escape(conversation.name)}"]`)) {
    renderSidebar();
  }
  if (message.room) clearTyper(message.room, message.sender.id);
  if (isCurrent && source !== "page") scheduleMarkRead();
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

/** Tell the server how far the open room has been read, so counts survive a reload. */
function markRead() {
  const conversation = state.current;
  if (conversation.unread) {
    conversation.unread = 0;
    renderSidebar();
  }
  if (conversation.kind !== "room" || !state.ready || document.visibilityState !== "visible") return;
  if (!state.rooms.has(conversation.name)) return;
  const newest = conversation.newestId();
  if (!newest || newest <= conversation.readSent) return;
  conversation.readSent = newest;
  call("read", { room: conversation.name, id: newest })
    .then((ack) => {
      if (!ack.ok) {
        conversation.readSent = 0;
        return;
      }
      conversation.lastReadId = ack.last_read_id;
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

function composeAndSend() {
  const body = ui.input.value.trim();
  const attachments = tray.ids();
  if (tray.busy) {
    tray.error.textContent = "Wait until the files have finished uploading.";
    return;
  }
  if (!body && !attachments.length) return;
  const conversation = state.current;
  tray.clear();
  const entry = outbox.add({
    client_id: newClientId(),
    kind: conversation.kind,
    to: conversation.name,
    body,
    attachments,
    created_at: new Date().toISOString(),
    status: "sending",
    error: null,
  });
  ui.input.value = "";
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
        if (entry.status !== "sending" || !outbox.get(entry.client_id)) continue;
        if (!(await sendEntry(entry))) {
          clearTimeout(resendTimer);
          resendTimer = setTimeout(flushOutbox, RESEND_DELAY_MS);
          return;
        }
      }
    } while (flushAgain);
  } finally {
    flushing = false;
  }
}

/** One attempt; false when no answer came (it stays "sending" and is tried again). */
async function sendEntry(entry) {
  const payload =
    entry.kind === "room"
      ? { room: entry.to, body: entry.body, client_id: entry.client_id }
      : { to_user: entry.to, body: entry.body, client_id: entry.client_id };
  if (entry.attachments?.length) payload.attachments = entry.attachments;
  let ack;
  try {
    ack = await call(entry.kind === "room" ? "message" : "dm", payload);
  } catch {
    return false;
  }
  if (ack.ok) {
    receive(ack.message, "ack");
    settle(entry.client_id, getConversation(entry.kind, entry.to));
  } else {
    const failed = outbox.update(entry.client_id, { status: "failed", error: ack.error });
    if (failed && state.current === getConversation(entry.kind, entry.to)) list.addPending(failed);
  }
  return true;
}

function retry(clientId) {
  const entry = outbox.update(clientId, { status: "sending", error: null });
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
  ui.input.focus();
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
  state.rooms = new Set(session.rooms.map((room) => room.name));
  for (const room of session.rooms) getConversation("room", room.name);
  for (const conversation of state.conversations.values()) {
    conversation.readSent = 0;
    if (conversation.kind === "room" && session.unread && conversation.name in session.unread) {
      conversation.unread = conversation === state.current ? 0 : session.unread[conversation.name];
    }
  }
  renderSidebar();
  refreshOnline(epoch);
  const reconnect = state.connectedBefore;
  state.connectedBefore = true;
  try {
    const conversation = state.current;
    if (conversation.kind === "room" && !state.rooms.has(conversation.name)) {
      const ack = await joinRoom(conversation.name);
      if (!ack.ok) ui.listError.textContent = ack.error.message;
    }
    if (epoch !== state.epoch) return;
    flushOutbox();
    // Id 0 is a real cursor (everything), so "no cursor yet" is null.
    const from = state.syncCursor > 0 ? state.syncCursor : state.liveFloor > 0 ? state.liveFloor - 1 : null;
    if (reconnect && from !== null) await catchUp(epoch, from);
    else if (reconnect) forgetEmptyConversations();
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
  if (state.kicked) return;
  if (socket.active) {
    setStatus("reconnecting", "Reconnecting…");
    return;
  }
  // The server refused this user: retrying would not help.
  if (error.message === "unauthorized") {
    setStatus("disconnected", "Disconnected: your session has ended. ");
    ui.status.append(el("a", { href: `/login?next=${encodeURIComponent("/")}` }, "Sign in again"));
  } else {
    setStatus("disconnected", `Disconnected: ${error.message}`);
  }
});

socket.on("kicked", ({ reason } = {}) => {
  state.kicked = String(reason || "removed by an admin");
  // The server disconnects right after; this page must not dial back in.
  socket.io.reconnection(false);
  setStatus("disconnected", `Disconnected: ${state.kicked}`);
});

socket.on("message", (message) => receive(message, "live"));
socket.on("dm", (message) => receive(message, "live"));
socket.on("typing", onTyping);

socket.on("presence", ({ user, online }) => {
  if (!user) return;
  if (online) state.online.set(user.id, user);
  else state.online.delete(user.id);
  renderOnline();
});

socket.on("message_deleted", ({ id, room }) => {
  // A deleted direct message comes with room null: look for it among the DM conversations.
  const conversation = room
    ? state.conversations.get(conversationKey("room", room))
    : [...state.conversations.values()].find((c) => c.kind === "dm" && c.messages.has(id));
  const message = conversation?.messages.get(id);
  if (!message) return;
  const deleted = { ...message, body: "", deleted: true };
  conversation.messages.set(id, deleted);
  if (conversation === state.current) list.upsert(deleted, { follow: false });
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

// -- the page's controls -----------------------------------------------------------

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
  open: (message) => navigate(conversationOf(message)),
});

ui.input.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
  event.preventDefault();
  composeAndSend();
});
ui.input.addEventListener("input", noteTyping);
ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  composeAndSend();
  ui.input.focus();
});

ui.joinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = ui.joinInput.value.trim();
  ui.joinError.textContent = "";
  if (!ROOM_NAME.test(name)) {
    ui.joinError.textContent =
      "Room names are 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit.";
    ui.joinInput.setAttribute("aria-invalid", "true");
    return;
  }
  ui.joinInput.removeAttribute("aria-invalid");
  if (!state.ready) {
    ui.joinError.textContent = "Not connected; try again in a moment.";
    return;
  }
  try {
    const ack = await joinRoom(name);
    if (!ack.ok) {
      ui.joinError.textContent = ack.error.message;
      return;
    }
    ui.joinInput.value = "";
    navigate(getConversation("room", ack.room.name));
  } catch (error) {
    ui.joinError.textContent = `The server did not answer (${error.message}).`;
  }
});

ui.leaveButton.addEventListener("click", async () => {
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

$("load-older").addEventListener("click", loadOlder);
$("message-scroller").addEventListener("scroll", (event) => {
  if (event.currentTarget.scrollTop < LOAD_OLDER_PX) loadOlder();
});

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") markRead();
});

ui.sidebarToggle.addEventListener("click", () => {
  const open = !root.classList.contains("sidebar-open");
  root.classList.toggle("sidebar-open", open);
  ui.sidebarToggle.setAttribute("aria-expanded", String(open));
  if (open) ui.sidebar.querySelector("a, button, input")?.focus();
});

function closeSidebarOnPhone() {
  if (!root.classList.contains("sidebar-open")) return;
  root.classList.remove("sidebar-open");
  ui.sidebarToggle.setAttribute("aria-expanded", "false");
  // Focus would otherwise stay on a link that just disappeared.
  ui.input.focus();
}

window.addEventListener("hashchange", route);

for (const name of storedDmPartners()) getConversation("dm", name);
for (const entry of outbox.all()) getConversation(entry.kind, entry.to);
route();
renderOnline();
