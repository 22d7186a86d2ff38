// Conversations on the official socket.io-client: edit, react and delete between two clients, catching up
// with `sync {"after_rev"}` after changes made while away, and the same events across two workers.
//
// Usage: node conversations.mjs '{"kind": "round_trip" | "catch_up" | "across_workers" | "ban_across_workers", ...}'
// Prints one JSON line describing what each side saw; the assertions live in pytest.

import { Manager } from "socket.io-client";

import { ack, record, run, scenario, waitFor } from "./harness.mjs";

const params = scenario();

/** One client on its own Manager (its own Engine.IO connection), recording every event of each namespace. */
function open(url, token, namespaces = ["/"]) {
  const manager = new Manager(url, { reconnection: false, transports: ["websocket"] });
  const sockets = {};
  for (const namespace of namespaces) {
    const socket = manager.socket(namespace, { auth: { token } });
    const received = record(socket);
    const ended = [];
    socket.on("disconnect", (reason) => ended.push(reason));
    sockets[namespace] = { socket, received, ended };
  }
  return sockets;
}

async function chat(url, token) {
  const client = open(url, token)["/"];
  client.session = await waitFor(client.socket, client.received, "session");
  return client;
}

function events(client, name, where = () => true) {
  return client.received.filter((entry) => entry.event === name && where(entry.data)).map((entry) => entry.data);
}

const byId = (id) => (data) => data && data.id === id;
const atRev = (rev) => (data) => data && data.rev === rev;
let counter = 0;
const clientId = () => `conv-${process.pid}-${Date.now()}-${counter++}`;

async function say(client, room, body) {
  return ack(client.socket, "message", { room, body, client_id: clientId() });
}

/** Events to one socket arrive in the order the server sent them: once ``client`` has a message
 * that ``other`` sent after everything else, every event those earlier actions caused has arrived. */
async function barrier(other, client, room) {
  const marker = await say(other, room, "barrier");
  await waitFor(client.socket, client.received, "message", byId(marker.message.id));
}

async function roundTrip({ url, alice: aliceToken, bob: bobToken, room }) {
  const alice = await chat(url, aliceToken);
  const bob = await chat(url, bobToken);
  await ack(alice.socket, "join", { room });
  await ack(bob.socket, "join", { room });

  const posted = (await say(alice, room, "first")).message;
  await waitFor(bob.socket, bob.received, "message", byId(posted.id));
  const id = posted.id;

  const bobEdits = await ack(bob.socket, "edit", { id, body: "not yours" });
  const edited = await ack(alice.socket, "edit", { id, body: "first, edited" });
  const bobSawEdit = await waitFor(bob.socket, bob.received, "message_updated", atRev(edited.message.rev));

  const reacted = await ack(bob.socket, "react", { id, emoji: "🎉", active: true });
  const aliceSawReaction = await waitFor(alice.socket, alice.received, "message_updated", atRev(reacted.message.rev));
  const reactedAgain = await ack(bob.socket, "react", { id, emoji: "🎉", active: true });

  const deleted = await ack(alice.socket, "delete", { id });
  const bobSawDeletion = await waitFor(bob.socket, bob.received, "message_updated", atRev(deleted.message.rev));
  const bobDeletedEvent = await waitFor(bob.socket, bob.received, "message_deleted", byId(id));
  const deletedAgain = await ack(alice.socket, "delete", { id });

  await barrier(bob, alice, room);
  await barrier(alice, bob, room);
  const history = await ack(bob.socket, "history", { room });
  alice.socket.disconnect();
  bob.socket.disconnect();
  return {
    posted,
    bobEdits,
    edited,
    bobSawEdit,
    reacted,
    aliceSawReaction,
    reactedAgain,
    deleted,
    bobSawDeletion,
    bobDeletedEvent,
    deletedAgain,
    aliceUpdates: events(alice, "message_updated"),
    bobUpdates: events(bob, "message_updated"),
    aliceDeletions: events(alice, "message_deleted"),
    history,
  };
}

async function catchUp({ url, alice: aliceToken, bob: bobToken, bobName, room }) {
  const alice = await chat(url, aliceToken);
  let bob = await chat(url, bobToken);
  await ack(alice.socket, "join", { room });
  await ack(bob.socket, "join", { room });

  const before = [];
  for (const body of ["one", "two", "three"]) before.push((await say(alice, room, body)).message);
  for (const message of before) await waitFor(bob.socket, bob.received, "message", byId(message.id));
  // What bob's client holds: the messages as they arrived, and the highest rev it has seen.
  const local = new Map(events(bob, "message").map((message) => [message.id, message]));
  const seenRev = Math.max(...before.map((message) => message.rev));
  bob.socket.disconnect();

  const whileAway = [
    await ack(alice.socket, "edit", { id: before[0].id, body: "one, edited" }),
    await ack(alice.socket, "react", { id: before[1].id, emoji: "👀", active: true }),
    await ack(alice.socket, "delete", { id: before[2].id }),
    await say(alice, room, `@${bobName} are you there?`),
    await ack(alice.socket, "dm", { to_user: bobName, body: "ping", client_id: clientId() }),
  ];

  bob = await chat(url, bobToken);
  const pages = [];
  let rev = seenRev;
  for (;;) {
    const page = await ack(bob.socket, "sync", { after_rev: rev });
    pages.push(page);
    for (const message of page.messages) local.set(message.id, message);
    rev = page.rev;
    if (!page.has_more) break;
  }
  const roomTruth = await ack(alice.socket, "history", { room });
  const dmTruth = await ack(alice.socket, "dm_history", { user: bobName });
  alice.socket.disconnect();
  bob.socket.disconnect();
  return {
    seenRev,
    whileAway,
    session: bob.session,
    pages,
    finalRev: rev,
    bobState: [...local.values()].sort((x, y) => x.id - y.id),
    truth: [...roomTruth.messages, ...dmTruth.messages].sort((x, y) => x.id - y.id),
  };
}

async function acrossWorkers({ a, b, alice: aliceToken, bob: bobToken, bobName, room }) {
  const alice = await chat(a, aliceToken);
  const bob = await chat(b, bobToken);
  await ack(alice.socket, "join", { room });
  await ack(bob.socket, "join", { room });
  const posted = (await say(alice, room, "across")).message;
  const bobGot = await waitFor(bob.socket, bob.received, "message", byId(posted.id));
  const edited = await ack(alice.socket, "edit", { id: posted.id, body: `across, @${bobName}` });
  const bobSawEdit = await waitFor(bob.socket, bob.received, "message_updated", atRev(edited.message.rev));
  const bobMention = await waitFor(bob.socket, bob.received, "mention", (data) => data.message.id === posted.id);
  const reacted = await ack(bob.socket, "react", { id: posted.id, emoji: "👋", active: true });
  const aliceSawReaction = await waitFor(alice.socket, alice.received, "message_updated", atRev(reacted.message.rev));
  await barrier(bob, alice, room);
  await barrier(alice, bob, room);

  // An invitation moves bob's socket on the other worker into the private room.
  const privateRoom = `${room}-p`;
  const created = await ack(alice.socket, "join", { room: privateRoom, private: true });
  const invited = await ack(alice.socket, "invite", { room: privateRoom, user: bobName });
  const bobJoined = await waitFor(bob.socket, bob.received, "room_joined", (data) => data.room.name === privateRoom);
  const topic = await ack(alice.socket, "topic", { room: privateRoom, topic: "just us" });
  const bobRoomUpdated = await waitFor(bob.socket, bob.received, "room_updated", (data) => data.room.name === privateRoom);
  const secret = (await say(alice, privateRoom, "secret")).message;
  const bobGotSecret = await waitFor(bob.socket, bob.received, "message", byId(secret.id));
  alice.socket.disconnect();
  bob.socket.disconnect();
  return {
    created,
    invited,
    bobJoined,
    topic,
    bobRoomUpdated,
    secret,
    bobGotSecret,
    posted,
    bobGot,
    edited,
    bobSawEdit,
    bobMention,
    reacted,
    aliceSawReaction,
    aliceUpdates: events(alice, "message_updated"),
    bobUpdates: events(bob, "message_updated"),
  };
}

async function banAcrossWorkers({ a, b, banner: bannerToken, victim: victimToken, victimName }) {
  const victim = open(b, victimToken, ["/", "/admin"]);
  const [main, admin] = [victim["/"], victim["/admin"]];
  await waitFor(main.socket, main.received, "session");
  const adminConnected = await new Promise((resolve) => {
    if (admin.socket.connected) return resolve(true);
    admin.socket.once("connect", () => resolve(true));
    admin.socket.once("connect_error", (error) => resolve(error.message));
  });
  // The victim's /admin socket works before the ban.
  const statsBefore = await ack(admin.socket, "stats", {});

  const banner = open(a, bannerToken, ["/admin"])["/admin"];
  await new Promise((resolve, reject) => {
    banner.socket.once("connect", resolve);
    banner.socket.once("connect_error", reject);
  });
  const banned = await ack(banner.socket, "ban", { user: victimName, reason: "test" });

  const kicked = await Promise.all([
    waitFor(main.socket, main.received, "kicked"),
    waitFor(admin.socket, admin.received, "kicked"),
  ]);
  const ended = await Promise.all(
    [main, admin].map(
      (client) =>
        new Promise((resolve) => {
          if (client.ended.length) return resolve(client.ended[0]);
          client.socket.once("disconnect", resolve);
        }),
    ),
  );
  banner.socket.disconnect();
  return { adminConnected, statsOk: statsBefore.ok, banned, kicked, ended };
}

const kinds = {
  round_trip: roundTrip,
  catch_up: catchUp,
  across_workers: acrossWorkers,
  ban_across_workers: banAcrossWorkers,
};

run(() => kinds[params.kind](params));
