// Two users on the official socket.io-client with default transports: room message, DM by sid, binary body.
//
// Usage: node chat.mjs '{"url": ..., "alice": TOKEN, "bob": TOKEN, "room": NAME}'
// Prints one JSON line describing what each side saw; the assertions live in pytest.

import { io } from "socket.io-client";

import { ack, record, run, scenario, upgraded, waitFor } from "./harness.mjs";

const { url, alice: aliceToken, bob: bobToken, room } = scenario();

function open(token) {
  const socket = io(url, { auth: { token }, forceNew: true, reconnection: false });
  // The Engine.IO connection exists as soon as io() returns, before any packet is exchanged.
  const firstTransport = socket.io.engine.transport.name;
  return { socket, received: record(socket), firstTransport };
}

const byId = (id) => (data) => data && data.id === id;

run(async () => {
  const alice = open(aliceToken);
  const bob = open(bobToken);
  const [aliceSession, bobSession] = await Promise.all([
    waitFor(alice.socket, alice.received, "session"),
    waitFor(bob.socket, bob.received, "session"),
  ]);
  const upgradedTo = await Promise.all([upgraded(alice.socket), upgraded(bob.socket)]);
  const socketIds = [alice.socket.id, bob.socket.id];

  const aliceJoin = await ack(alice.socket, "join", { room });
  const bobJoin = await ack(bob.socket, "join", { room });

  const messageAck = await ack(alice.socket, "message", { room, body: "  hello from node  ", client_id: `node-${Date.now()}` });
  const bobMessage = await waitFor(bob.socket, bob.received, "message", byId(messageAck.message?.id));
  // Packets to one socket arrive in order and are handled in order, so any echo to the
  // sender would already be recorded by the time a later acknowledgement comes back.
  await ack(alice.socket, "who", {});
  const aliceEchoes = alice.received.filter((entry) => entry.event === "message" && byId(messageAck.message?.id)(entry.data));

  const dmAck = await ack(alice.socket, "dm", { to_sid: bob.socket.id, body: "psst", client_id: `node-dm-${Date.now()}` });
  const bobDm = await waitFor(bob.socket, bob.received, "dm", byId(dmAck.message?.id));

  const binaryAck = await ack(alice.socket, "message", { room, body: Buffer.from("not text"), client_id: `node-bin-${Date.now()}` });
  const connectedAfterBinary = alice.socket.connected;
  const afterBinaryAck = await ack(alice.socket, "message", { room, body: "still here", client_id: `node-after-${Date.now()}` });
  const history = await ack(bob.socket, "history", { room });

  alice.socket.disconnect();
  bob.socket.disconnect();
  return {
    firstTransports: [alice.firstTransport, bob.firstTransport],
    upgradedTo,
    sessions: [aliceSession, bobSession],
    socketIds,
    joins: [aliceJoin, bobJoin],
    messageAck,
    bobMessage,
    aliceEchoes,
    dmAck,
    bobDm,
    binaryAck,
    connectedAfterBinary,
    afterBinaryAck,
    history,
  };
});
