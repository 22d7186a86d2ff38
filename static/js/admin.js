// The admin dashboard: live statistics and moderation over /admin.
// One Manager carries both /admin and / on a single connection; / brings presence changes,
// so the socket list follows users coming and going without waiting for the next stats push.
import { Manager } from "/static/vendor/socket.io.esm.min.js";

const ACK_TIMEOUT_MS = 10_000;
const AUDIT_LIMIT = 50;

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("admin-status"),
  feedback: $("admin-feedback"),
  usersOnline: $("stat-users-online"),
  socketCount: $("stat-sockets"),
  messagesLastMinute: $("stat-messages"),
  statsUpdated: $("stats-updated"),
  rooms: $("rooms-body"),
  sockets: $("sockets-body"),
  socketsEmpty: $("sockets-empty"),
  userSearch: $("user-search"),
  userQuery: $("user-query"),
  users: $("users-body"),
  usersEmpty: $("users-empty"),
  banReason: $("ban-reason"),
  muteMinutes: $("mute-minutes"),
  deleteForm: $("delete-form"),
  deleteId: $("delete-id"),
  announceForm: $("announce-form"),
  announceBody: $("announce-body"),
  audit: $("audit-body"),
  auditRefresh: $("audit-refresh"),
  confirm: $("admin-confirm"),
  confirmTitle: $("admin-confirm-title"),
  confirmText: $("admin-confirm-text"),
  confirmOk: $("admin-confirm-ok"),
};

const manager = new Manager(location.origin);
const admin = manager.socket("/admin");
const chat = manager.socket("/");
const me = JSON.parse($("admin").dataset.user);
let lastQuery = "";
// The user a "show in Users" control asked for (lowercased): their row stays marked until the
// next search typed by hand, and takes the focus once, when it is first listed.
let shownUser = null;
let focusShown = false;

// -- small DOM helpers: text only ever goes in through textContent -------------------------

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(...cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell === null || cell === undefined ? "" : String(cell);
    tr.append(td);
  }
  return tr;
}

/**
 * Put fresh rows in a table body without losing the keyboard focus: lists refresh on every
 * statistics push, and a control that was focused is focused again in its new row (the one with
 * the same `data-key`, then the same accessible name), or the row's first control.
 */
function replaceRows(body, rows) {
  const active = document.activeElement;
  const key = body.contains(active) ? active.closest("tr")?.dataset.key : undefined;
  const label = key === undefined ? null : active.getAttribute("aria-label");
  body.replaceChildren(...rows);
  if (key === undefined) return;
  const tr = rows.find((candidate) => candidate.dataset.key === key);
  if (!tr) return;
  const controls = [...tr.querySelectorAll("button, [tabindex]")];
  (controls.find((node) => label !== null && node.getAttribute("aria-label") === label) || controls[0])?.focus();
}

function timeOf(iso) {
  const node = el("time", iso ? new Date(iso).toLocaleString() : "");
  if (iso) node.dateTime = iso;
  return node;
}

function button(label, accessibleName, onClick, className) {
  const node = el("button", label, className);
  node.type = "button";
  node.setAttribute("aria-label", accessibleName);
  node.addEventListener("click", onClick);
  return node;
}

// A username that opens that user in the Users section (their ban and mute state, and actions).
// `context` keeps the accessible name of each such control unique on the page.
function userControl(user, context) {
  const name = user.username;
  const node = button(name, `Show ${name} in Users (${context})`, () => showUser(name), "user-link");
  node.dataset.user = name;
  return node;
}

async function showUser(name) {
  ui.userQuery.value = name;
  shownUser = name.toLowerCase();
  focusShown = true;
  await searchUsers(name);
}

function setStatus(text, kind) {
  ui.status.textContent = text;
  ui.status.dataset.kind = kind;
}

function say(text, ok = true) {
  ui.feedback.textContent = text;
  ui.feedback.classList.toggle("admin-feedback-error", !ok);
}

// -- talking to /admin -----------------------------------------------------------------------

async function ask(event, payload = {}) {
  try {
    return await admin.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
  } catch {
    return { ok: false, error: { code: "internal", message: "the server did not answer in time" } };
  }
}

// Bans and kicks ask first: a click in the wrong row must not throw someone out.
function confirmFirst(title, text, verb) {
  ui.confirmTitle.textContent = title;
  ui.confirmText.textContent = text;
  ui.confirmOk.textContent = verb;
  ui.confirm.returnValue = "";
  ui.confirm.showModal();
  ui.confirmOk.focus();
  return new Promise((resolve) => {
    // The close of an earlier prompt can still be on its way (its event is queued, not
    // dispatched at once): while this one is open, a close event is not its answer.
    const answered = () => {
      if (ui.confirm.open) return;
      ui.confirm.removeEventListener("close", answered);
      resolve(ui.confirm.returnValue === "confirm");
    };
    ui.confirm.addEventListener("close", answered);
  });
}

async function act(event, payload, success) {
  const answer = await ask(event, payload);
  if (answer.ok) {
    const said = success(answer);
    if (Array.isArray(said)) {
      ui.feedback.replaceChildren(...said);
      ui.feedback.classList.remove("admin-feedback-error");
    } else say(said);
  }
  else say(`Could not ${event.replace("_", " ")}: ${answer.error.message}`, false);
  await Promise.all([refreshAudit(), refreshSockets(), searchUsers(lastQuery)]);
  return answer;
}

// -- statistics ---------------------------------------------------------------------------

function showStats(stats) {
  ui.usersOnline.textContent = String(stats.users_online);
  ui.socketCount.textContent = String(stats.sockets);
  ui.messagesLastMinute.textContent = String(stats.messages_last_minute);
  ui.rooms.replaceChildren(...stats.rooms.map((room) => row(`#${room.name}`, room.members, room.online)));
  const now = new Date();
  ui.statsUpdated.textContent = now.toLocaleTimeString();
  ui.statsUpdated.dateTime = now.toISOString();
}

async function refreshStats() {
  const answer = await ask("stats");
  if (answer.ok) showStats(answer.stats);
}

// -- sockets --------------------------------------------------------------------------------

async function refreshSockets() {
  const answer = await ask("sockets");
  if (!answer.ok) return;
  replaceRows(
    ui.sockets,
    answer.sockets.map((socket) => {
      const who = socket.user.username;
      const kick = button("Kick", `Kick ${who} (socket ${socket.sid})`, async () => {
        const sure = await confirmFirst(`Kick ${who}?`, `Socket ${socket.sid} is disconnected; ${who} may reconnect.`, "Kick");
        if (sure) await act("kick", { sid: socket.sid }, () => `Kicked a socket of ${who}.`);
      });
      const tr = row(
        userControl(socket.user, `socket ${socket.sid}`),
        el("code", socket.sid),
        socket.transport,
        socket.rooms.map((name) => `#${name}`).join(", "),
        timeOf(socket.connected_at),
        kick,
      );
      tr.dataset.key = socket.sid;
      return tr;
    }),
  );
  ui.socketsEmpty.hidden = answer.sockets.length > 0;
}

// -- users ----------------------------------------------------------------------------------

function describe(user) {
  const parts = [user.online ? "online" : "offline"];
  if (user.is_admin) parts.push("admin");
  if (user.banned) parts.push(user.ban_reason ? `banned: ${user.ban_reason}` : "banned");
  if (user.muted_until) parts.push(`muted until ${new Date(user.muted_until).toLocaleString()}`);
  return parts.join(" · ");
}

function muteSeconds() {
  const minutes = Number.parseInt(ui.muteMinutes.value, 10);
  return Number.isFinite(minutes) && minutes > 0 ? minutes * 60 : undefined;
}

function userActions(user) {
  const name = user.username;
  const actions = el("div", null, "admin-actions");
  // The server refuses banning or muting yourself; no button offers it.
  if (user.id === me.id) return actions;
  if (user.banned) {
    actions.append(button("Unban", `Unban ${name}`, () => act("unban", { user: name }, () => `Unbanned ${name}.`)));
  } else {
    actions.append(
      button(
        "Ban",
        `Ban ${name}`,
        async () => {
          const reason = ui.banReason.value.trim();
          const why = reason ? `Reason: ${reason}.` : "No reason given.";
          const sure = await confirmFirst(`Ban ${name}?`, `${name} is disconnected everywhere and cannot sign in. ${why}`, "Ban");
          if (!sure) return;
          const answer = await act("ban", reason ? { user: name, reason } : { user: name }, () => `Banned ${name}.`);
          // The reason belongs to this ban; the next one starts empty.
          if (answer.ok) ui.banReason.value = "";
        },
        "danger",
      ),
    );
  }
  if (user.muted_until) {
    actions.append(button("Unmute", `Unmute ${name}`, () => act("unmute", { user: name }, () => `Unmuted ${name}.`)));
  } else {
    actions.append(
      button("Mute", `Mute ${name}`, () =>
        act("mute", { user: name, seconds: muteSeconds() }, (answer) => {
          return `Muted ${name} until ${new Date(answer.user.muted_until).toLocaleString()}.`;
        }),
      ),
    );
  }
  return actions;
}

let searchCount = 0;

async function searchUsers(query) {
  const asked = ++searchCount;
  lastQuery = query;
  const answer = await ask("users", { query });
  if (asked !== searchCount) return; // a later search (or refresh) was asked for meanwhile
  if (!answer.ok) {
    say(`Could not search: ${answer.error.message}`, false);
    return;
  }
  let shown = null;
  replaceRows(
    ui.users,
    answer.users.map((user) => {
      const name = el("span", user.username, "user-name");
      const tr = row(name, describe(user), userActions(user));
      tr.dataset.key = user.username;
      if (user.username.toLowerCase() === shownUser) {
        tr.classList.add("shown");
        name.tabIndex = -1;
        shown = name;
      }
      return tr;
    }),
  );
  ui.usersEmpty.hidden = answer.users.length > 0;
  if (shown && focusShown) {
    // Asked for from a socket, a message or an audit entry: bring the row into view, focused.
    focusShown = false;
    shown.scrollIntoView({ block: "center" });
    shown.focus();
  }
}

// -- audit log --------------------------------------------------------------------------

async function refreshAudit() {
  const answer = await ask("audit", { limit: AUDIT_LIMIT });
  if (!answer.ok) return;
  replaceRows(
    ui.audit,
    answer.entries.map((entry) => {
      const tr = row(
        timeOf(entry.created_at),
        entry.admin.username,
        entry.action,
        entry.user ? userControl(entry.user, `audit entry ${entry.id}`) : entry.target,
        auditDetails(entry),
      );
      tr.dataset.key = String(entry.id);
      return tr;
    }),
  );
}

/** Details as stored, except a mute's ISO end time, which is shown in the viewer's locale. */
function auditDetails(entry) {
  const details = entry.details ?? "";
  if (entry.action !== "mute") return details;
  return details.replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/, (iso) => new Date(iso).toLocaleString());
}

// -- forms ------------------------------------------------------------------------------------

ui.userSearch.addEventListener("submit", (event) => {
  event.preventDefault();
  shownUser = null;
  searchUsers(ui.userQuery.value.trim());
});

ui.deleteForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = Number(ui.deleteId.value);
  if (!Number.isInteger(id) || id < 1) {
    say("Give the id of a message: a whole number from 1.", false);
    return;
  }
  const answer = await act("delete_message", { id }, ({ message }) => [
    `Deleted message ${id} from `,
    userControl(message.sender, `message ${id}`),
    ".",
  ]);
  if (answer.ok) ui.deleteId.value = "";
});

ui.announceForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = ui.announceBody.value.trim();
  if (!body) {
    say("Write the announcement first.", false);
    return;
  }
  const answer = await act("announce", { body }, () => "Announcement sent to everyone online.");
  if (answer.ok) ui.announceBody.value = "";
});

ui.auditRefresh.addEventListener("click", () => refreshAudit());

// -- connection ---------------------------------------------------------------------------

admin.on("connect", () => {
  setStatus("Connected", "connected");
  refreshStats();
  refreshSockets();
  refreshAudit();
  searchUsers(lastQuery);
});

admin.on("disconnect", (reason) => {
  if (ui.status.dataset.kind === "kicked") return;
  setStatus(reason === "io server disconnect" ? "Disconnected by the server" : "Reconnecting…", "disconnected");
});

admin.on("connect_error", (error) => {
  setStatus(`Cannot connect: ${error.message}`, "disconnected");
});

admin.on("kicked", ({ reason } = {}) => {
  setStatus(`Disconnected: ${reason}`, "kicked");
});

admin.on("stats", (stats) => {
  showStats(stats);
  // Sockets change without a presence event (a second tab, a transport upgrade).
  refreshSockets();
});

chat.on("presence", () => {
  refreshStats();
  refreshSockets();
  searchUsers(lastQuery);
});
