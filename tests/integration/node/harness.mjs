// What the Node scenarios share: reading the scenario, recording events, waiting with bounds, printing JSON.

export const WAIT_MS = 10_000;

/** The scenario pytest passed as the first argument, as JSON. */
export function scenario() {
  return JSON.parse(process.argv[2]);
}

/** Print the result as one JSON line (pytest reads the last line) and exit. */
export function finish(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(0);
}

/** Run ``main`` with an overall bound, so a hung socket fails the test instead of stalling it. */
export function run(main, limitMs = 45_000) {
  const timer = setTimeout(() => {
    process.stderr.write(`scenario did not finish within ${limitMs} ms\n`);
    process.exit(2);
  }, limitMs);
  timer.unref();
  main().then(finish, (error) => {
    process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
    process.exit(1);
  });
}

/** Record every event a socket receives, in arrival order. */
export function record(socket) {
  const received = [];
  socket.onAny((event, ...args) => received.push({ event, data: args[0] }));
  return received;
}

/** Resolve with the first recorded ``event`` whose data satisfies ``where``, waiting for it if need be. */
export function waitFor(socket, received, event, where = () => true) {
  const found = received.find((entry) => entry.event === event && where(entry.data));
  if (found) return Promise.resolve(found.data);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.offAny(listener);
      reject(new Error(`no ${event} event within ${WAIT_MS} ms`));
    }, WAIT_MS);
    const listener = (name, data) => {
      if (name === event && where(data)) {
        clearTimeout(timer);
        socket.offAny(listener);
        resolve(data);
      }
    };
    socket.onAny(listener);
  });
}

/** Resolve with how a namespace connection attempt ended: connected, or refused with a message. */
export function connectOutcome(socket) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ connected: false, error: "timeout" }), WAIT_MS);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve({ connected: true, error: null });
    });
    socket.once("connect_error", (error) => {
      clearTimeout(timer);
      resolve({ connected: false, error: error.message });
    });
  });
}

/** Resolve once the socket's Engine.IO connection runs over websocket (after the upgrade from polling). */
export function upgraded(socket) {
  const engine = socket.io.engine;
  if (engine.transport.name === "websocket") return Promise.resolve("websocket");
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no transport upgrade within ${WAIT_MS} ms`)), WAIT_MS);
    engine.once("upgrade", (transport) => {
      clearTimeout(timer);
      resolve(transport.name);
    });
  });
}

export function ack(socket, event, payload) {
  return socket.timeout(WAIT_MS).emitWithAck(event, payload);
}
