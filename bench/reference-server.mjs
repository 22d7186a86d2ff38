/**
 * The Node socket.io reference servers every benchmark run measures Switchboard against.
 *
 * It speaks the same chat events as Switchboard's `/` namespace (`join`, `leave`, `message`,
 * `read`, `who` with acks, `session` and `presence` pushes, room fan-out to the other sockets).
 * Tokens are accepted as they come (the token is the username).
 *
 * Two modes:
 * - in memory (no DATABASE_URL): message ids come from a counter, a room keeps its last 50
 *   messages for the `join` ack, read markers live in a map;
 * - persisting (DATABASE_URL=postgresql://...): every message is INSERTed into PostgreSQL and
 *   fanned out and acked only once that INSERT has committed (one autocommitted statement, with
 *   the database's own id and duplicate `client_id` check); `join` stores the membership and
 *   reads the last 50 messages back, `read` moves the stored marker in one UPDATE that checks the
 *   message belongs to the room. A pool of REFERENCE_PG_POOL connections (default 10) serves them.
 */
import http from "node:http";
import { Server } from "socket.io";

const DATABASE_URL = process.env.DATABASE_URL || "";
const pool = DATABASE_URL ? await openDatabase(DATABASE_URL) : null;

async function openDatabase(url) {
  const { default: pg } = await import("pg");
  const database = new pg.Pool({ connectionString: url, max: Number(process.env.REFERENCE_PG_POOL || 10) });
  await database.query(`
    CREATE TABLE IF NOT EXISTS ref_messages (
      id bigserial PRIMARY KEY,
      room text NOT NULL,
      sender_id integer NOT NULL,
      body text NOT NULL,
      client_id text,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX IF NOT EXISTS ref_messages_client ON ref_messages (sender_id, client_id);
    CREATE INDEX IF NOT EXISTS ref_messages_room ON ref_messages (room, id);
    CREATE TABLE IF NOT EXISTS ref_memberships (
      user_id integer NOT NULL,
      room text NOT NULL,
      last_read_id bigint NOT NULL DEFAULT 0,
      PRIMARY KEY (user_id, room)
    );
  `);
  return database;
}

const PORT = Number(process.env.PORT || 5100);
const HOST = process.env.HOST || "127.0.0.1";
const MAX_BODY = 4000;
const HISTORY_KEPT = 50;
const ROOM_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

const usersByName = new Map();
const usersById = new Map();
const socketsByUser = new Map();
const rooms = new Map();
const clientIds = new Map();
const messageRooms = new Map();
const readMarkers = new Map();
let nextUserId = 1;
let nextMessageId = 1;

function userFor(name) {
  let user = usersByName.get(name);
  if (!user) {
    user = { id: nextUserId++, username: name, is_admin: false };
    usersByName.set(name, user);
    usersById.set(user.id, user);
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

function storedMessage(row, roomName) {
  return {
    id: Number(row.id),
    room: roomName,
    sender: usersById.get(row.sender_id) || null,
    recipient: null,
    body: row.body,
    client_id: row.client_id,
    created_at: row.created_at.toISOString(),
    deleted: false,
  };
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

  socket.on("join", async (data, ack) => {
    if (typeof ack !== "function") return;
    if (!data || !checkRoomName(data.room)) return ack(refuse("invalid", "room must be a valid room name"));
    const room = roomFor(data.room);
    let recent = room.recent;
    if (pool) {
      try {
        await pool.query("INSERT INTO ref_memberships (user_id, room) VALUES ($1, $2) ON CONFLICT DO NOTHING", [
          user.id,
          room.name,
        ]);
        const { rows } = await pool.query(
          "SELECT id, sender_id, body, client_id, created_at FROM ref_messages WHERE room = $1 ORDER BY id DESC LIMIT $2",
          [room.name, HISTORY_KEPT],
        );
        recent = rows.reverse().map((row) => storedMessage(row, room.name));
      } catch (error) {
        return ack(refuse("internal", String(error)));
      }
    }
    room.members.add(user.id);
    io.in(`user:${user.id}`).socketsJoin(`room:${room.name}`);
    ack({ ok: true, room: roomDict(room), messages: recent });
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
    if (pool) {
      persistMessage(room, body, clientId).then(
        ({ message, fresh }) => {
          if (fresh) socket.to(`room:${room.name}`).emit("message", message);
          ack({ ok: true, message });
        },
        (error) => ack(refuse("internal", String(error))),
      );
      return;
    }
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
    messageRooms.set(message.id, room.name);
    socket.to(`room:${room.name}`).emit("message", message);
    ack({ ok: true, message });
  });

  /** The message as it committed; `fresh` is false when the client_id was already stored. */
  async function persistMessage(room, body, clientId) {
    const inserted = await pool.query(
      "INSERT INTO ref_messages (room, sender_id, body, client_id) VALUES ($1, $2, $3, $4) " +
        "ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING id, sender_id, body, client_id, created_at",
      [room.name, user.id, body, clientId],
    );
    if (inserted.rows.length) return { message: storedMessage(inserted.rows[0], room.name), fresh: true };
    const { rows } = await pool.query(
      "SELECT id, sender_id, body, client_id, created_at FROM ref_messages WHERE sender_id = $1 AND client_id = $2",
      [user.id, clientId],
    );
    return { message: storedMessage(rows[0], room.name), fresh: false };
  }

  socket.on("read", async (data, ack) => {
    if (typeof ack !== "function") return;
    if (!data || !checkRoomName(data.room)) return ack(refuse("invalid", "room must be a valid room name"));
    const room = rooms.get(data.room);
    if (!room) return ack(refuse("not_found", "no such room"));
    if (!room.members.has(user.id)) return ack(refuse("forbidden", "only members keep a read marker"));
    if (!Number.isInteger(data.id) || data.id < 1) return ack(refuse("invalid", "id must be a positive integer"));
    if (pool) {
      try {
        const { rows } = await pool.query(
          "UPDATE ref_memberships SET last_read_id = GREATEST(last_read_id, $3) WHERE user_id = $1 AND room = $2 " +
            "AND EXISTS (SELECT 1 FROM ref_messages WHERE id = $3 AND room = $2) RETURNING last_read_id",
          [user.id, room.name, data.id],
        );
        if (!rows.length) return ack(refuse("not_found", `no message ${data.id} in ${room.name}`));
        return ack({ ok: true, room: room.name, last_read_id: Number(rows[0].last_read_id) });
      } catch (error) {
        return ack(refuse("internal", String(error)));
      }
    }
    if (messageRooms.get(data.id) !== room.name) return ack(refuse("not_found", `no message ${data.id} in ${room.name}`));
    const key = `${user.id}:${room.name}`;
    const marker = Math.max(readMarkers.get(key) || 0, data.id);
    readMarkers.set(key, marker);
    ack({ ok: true, room: room.name, last_read_id: marker });
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
