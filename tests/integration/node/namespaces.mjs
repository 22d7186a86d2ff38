// `/` and `/admin` multiplexed on one Manager of the official socket.io-client, for one set of credentials.
//
// Usage: node namespaces.mjs '{"url": ..., "token": TOKEN or null}'
// Prints one JSON line: how each namespace's connection ended and what `/` could still do afterwards.

import { io } from "socket.io-client";

import { ack, connectOutcome, record, run, scenario, waitFor } from "./harness.mjs";

const { url, token } = scenario();

run(async () => {
  const options = { reconnection: false, ...(token === null ? {} : { auth: { token } }) };
  // Same URL, no forceNew: io() hands the second namespace the first one's Manager.
  const main = io(url, options);
  const admin = io(`${url}/admin`, options);
  const mainReceived = record(main);
  const [mainOutcome, adminOutcome] = await Promise.all([connectOutcome(main), connectOutcome(admin)]);

  const result = {
    sharedManager: main.io === admin.io,
    main: mainOutcome,
    admin: adminOutcome,
  };
  if (mainOutcome.connected) {
    result.session = await waitFor(main, mainReceived, "session");
    result.mainWho = await ack(main, "who", {});
    result.mainStillConnected = main.connected;
  }
  if (adminOutcome.connected) {
    result.stats = await ack(admin, "stats", {});
    result.sockets = await ack(admin, "sockets", {});
  }
  result.engineId = main.io.engine ? main.io.engine.id : null;
  main.disconnect();
  admin.disconnect();
  return result;
});
