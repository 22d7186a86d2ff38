/**
 * The Node socket.io reference server every benchmark run measures Switchboard against.
 *
 * It speaks the same chat events as Switchboard's `/` namespace (`join`, `leave`, `message`,
 * `who` with acks, `session` and `presence` pushes, room fan-out to the other sockets) and keeps
 * its state in memory only: tokens are accepted as they come (the token is the username), message
 * ids come from a counter, and a room keeps its last 50 messages for the `join` ack.
 */
import http from "node:http";
import { Server } from "socket.io";

const PORT = Number(process.env.PORT || 5100);
const HOST = process.env.HOST || "127.0.0.1";
const MAX_BODY = 4000;
const HISTORY_KEPT = 50;
const ROOM_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

const usersByName = new Map();
const socketsByUser = new Map();
const rooms = new Map();
const clientIds = new Map();
let nextUserId = 1;
let nextMessageId = 1;

function userFor(name) {
  let user = usersByName.get(name);
  if (!user) {
    user = { id: nextUserId++, username: name, is_admin: false };
    usersByName.set(name, user);
  }
  return user;
}

function roomFor(name) {
  let room = rooms.get(name);
  if (!room) {
    room = { name, members: new Set(), recent: [] };
    rooms.set(name, room);
  }
  return room;
}

function roomDict(room) {
  let online = 0;
  for (const userId of room.members) if (socketsByUser.has(userId)) online += 1;
  return { name: room.name, members: room.members.size, online };
}

function refuse(code, message) {
  return { ok: false, error: { code, message } };
}

function checkRoomName(name) {
  return typeof name === "string" && ROOM_NAME.test(name);
}

const httpServer = http.createServer((request, response) => {
  if (request.url === "/healthz") {
    response.writeHead(200, { "content-type": "application/json" });
    response.end('{"status":"ok"}');
    return;
  }
  response.writeHead(404);
  response.end();
});

const io = new Server(httpServer, { maxHttpBufferSize: 1_000_000, serveClient: false });

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  if (typeof token !== "string" || token.length === 0) {
    next(new Error("unauthorized"));
    return;
  }
  socket.data.user = userFor(token);
  next();
});

io.on("connection", (socket) => {
  const user = socket.data.user;
  socket.join(`user:${user.id}`);
  const memberRooms = [];
  for (const room of rooms.values()) {
    if (room.members.has(user.id)) {
      socket.join(`room:${room.name}`);
      memberRooms.push(room);
    }
  }
  let sids = socketsByUser.get(user.id);
  const first = !sids;
  if (first) {
    sids = new Set();
    socketsByUser.set(user.id, sids);
  }
  sids.add(socket.id);
  socket.emit("session", { user, sid: socket.id, rooms: memberRooms.map(roomDict) });
  if (first) io.emit("presence", { user, online: true });

  socket.on("disconnect", () => {
    sids.delete(socket.id);
    if (sids.size === 0) {
      socketsByUser.delete(user.id);
      io.emit("presence", { user, online: false });
    }
  });

  socket.on("join", (data, ack) => {
    if (typeof ack !== "function") return;
    if (!data || !checkRoomName(data.room)) return ack(refuse("invalid", "room must be a valid room name"));
    const room = roomFor(data.room);
    room.members.add(user.id);
    io.in(`user:${user.id}`).socketsJoin(`room:${room.name}`);
    ack({ ok: true, room: roomDict(room), messages: room.recent });
  });

  socket.on("leave", (data, ack) => {
    if (typeof ack !== "function") return;
    const room = data && rooms.get(data.room);
    if (!room) return ack(refuse("not_found", "no such room"));
    room.members.delete(user.id);
    io.in(`user:${user.id}`).socketsLeave(`room:${room.name}`);
    ack({ ok: true });
  });

  socket.on("message", (data, ack) => {
    if (typeof ack !== "function") return;
    if (!data || !checkRoomName(data.room)) return ack(refuse("invalid", "room must be a valid room name"));
    const room = rooms.get(data.room);
    if (!room) return ack(refuse("not_found", "no such room"));
    if (!room.members.has(user.id)) return ack(refuse("forbidden", "join the room first"));
    if (typeof data.body !== "string") return ack(refuse("invalid", "body must be a string"));
    const body = data.body.trim();
    if (!body) return ack(refuse("invalid", "body must not be empty"));
    if (body.length > MAX_BODY) return ack(refuse("too_large", "body is too long"));
    const clientId = typeof data.client_id === "string" ? data.client_id : null;
    const clientKey = clientId && `${user.id}:${clientId}`;
    if (clientKey && clientIds.has(clientKey)) return ack({ ok: true, message: clientIds.get(clientKey) });
    const message = {
      id: nextMessageId++,
      room: room.name,
      sender: user,
      recipient: null,
      body,
      client_id: clientId,
      created_at: new Date().toISOString(),
      deleted: false,
    };
    if (clientKey) clientIds.set(clientKey, message);
    room.recent.push(message);
    if (room.recent.length > HISTORY_KEPT) room.recent.shift();
    socket.to(`room:${room.name}`).emit("message", message);
    ack({ ok: true, message });
  });

  socket.on("who", (_data, ack) => {
    if (typeof ack !== "function") return;
    const byUser = new Map();
    for (const other of io.of("/").sockets.values()) {
      const entry = byUser.get(other.data.user.id) || { user: other.data.user, sids: [] };
      entry.sids.push(other.id);
      byUser.set(other.data.user.id, entry);
    }
    ack({ ok: true, users: [...byUser.values()] });
  });
});

httpServer.listen(PORT, HOST, () => {
  process.stdout.write(`reference server listening on http://${HOST}:${PORT}\n`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
