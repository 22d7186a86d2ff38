// An admin multiplexing `/` and `/admin` on one Manager sends an Engine.IO packet over 1 MB.
//
// Usage: node oversized.mjs '{"url": ..., "token": ADMIN_TOKEN, "transports": ["polling"] or null}'
// Prints one JSON line: the transport used and why each namespace was disconnected.

import { io } from "socket.io-client";

import { WAIT_MS, ack, connectOutcome, run, scenario, upgraded } from "./harness.mjs";

const { url, token, transports } = scenario();

function disconnectReason(socket) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), WAIT_MS);
    socket.once("disconnect", (reason) => {
      clearTimeout(timer);
      resolve(reason);
    });
  });
}

run(async () => {
  const options = { auth: { token }, reconnection: false, ...(transports ? { transports } : {}) };
  const main = io(url, options);
  const admin = io(`${url}/admin`, options);
  const outcomes = await Promise.all([connectOutcome(main), connectOutcome(admin)]);
  const transport = transports ? main.io.engine.transport.name : await upgraded(main);
  const statsBefore = await ack(admin, "stats", {});

  const reasons = Promise.all([disconnectReason(main), disconnectReason(admin)]);
  main.emit("message", { room: "general", body: "x".repeat(1_000_001), client_id: `oversized-${Date.now()}` });
  const [mainReason, adminReason] = await reasons;

  return {
    outcomes,
    transport,
    statsBefore,
    mainReason,
    adminReason,
    connected: [main.connected, admin.connected],
  };
});
