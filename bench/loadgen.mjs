/**
 * The benchmark's load generator: many thin clients plus a few real socket.io-client ones.
 *
 * Thin clients speak Engine.IO 4 / Socket.IO 5 over a bare `ws` websocket (open packet, `40{auth}`,
 * ping `2` answered with pong `3`, events `42`, acks `43`), so one Node process on one core can
 * drive thousands of sockets. A few socket.io-client instances (default transports: polling, then
 * the websocket upgrade) check that nothing differs for the official client.
 *
 * It is driven by bench/run.py: one JSON command per line on stdin, one JSON answer per line on
 * stdout. Senders stamp `performance.now()` into the message body and the receivers live in this
 * same process, so every latency is read off one clock.
 */
import { createInterface } from "node:readline";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { io } from "socket.io-client";
import WebSocket from "ws";

const clients = [];
let messageHandler = null;

function websocketUrl(baseUrl) {
  return `${baseUrl.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`;
}

function count(map, key, by = 1) {
  map[key] = (map[key] || 0) + by;
}

class Client {
  constructor(index, token) {
    this.index = index;
    this.token = token;
    this.events = {};
    this.seen = new Set();
    this.connected = false;
  }

  dispatch(event, data) {
    count(this.events, event);
    if (event === "message" && messageHandler) messageHandler(this, data);
  }
}

/** A socket speaking the Engine.IO/Socket.IO framing itself, namespace `/` only. */
class ThinClient extends Client {
  constructor(index, token) {
    super(index, token);
    this.kind = "thin";
    this.frames = 0;
    this.nextAckId = 0;
    this.pendingAcks = new Map();
  }

  connect(url, timeoutMs) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error) {
          this.ws.terminate();
          reject(error);
        } else {
          resolve(this);
        }
      };
      const timer = setTimeout(() => settle(new Error("connect timeout")), timeoutMs);
      // Offered like socket.io-client offers it; the servers decide whether to compress.
      this.ws = new WebSocket(websocketUrl(url), { perMessageDeflate: { threshold: 1024 } });
      this.ws.on("message", (data) => {
        const frame = data.toString();
        this.frames += 1;
        if (frame === "2") {
          this.ws.send("3");
        } else if (frame[0] === "0") {
          this.ws.send(`40${JSON.stringify({ token: this.token })}`);
        } else if (frame[0] === "4") {
          this.handlePacket(frame, settle);
        }
      });
      this.ws.on("error", (error) => settle(error));
      this.ws.on("close", () => {
        this.connected = false;
        settle(new Error("closed before connect"));
      });
    });
  }

  handlePacket(frame, settleConnect) {
    const type = frame[1];
    if (type === "2") {
      let start = 2;
      while (frame.charCodeAt(start) >= 48 && frame.charCodeAt(start) <= 57) start += 1;
      const [event, data] = JSON.parse(frame.slice(start));
      this.dispatch(event, data);
    } else if (type === "3") {
      let start = 2;
      while (frame.charCodeAt(start) >= 48 && frame.charCodeAt(start) <= 57) start += 1;
      const id = Number(frame.slice(2, start));
      const resolve = this.pendingAcks.get(id);
      if (resolve) {
        this.pendingAcks.delete(id);
        resolve(JSON.parse(frame.slice(start))[0]);
      }
    } else if (type === "0") {
      this.connected = true;
      settleConnect(null);
    } else if (type === "4") {
      let reason = "refused";
      try {
        reason = JSON.parse(frame.slice(2)).message;
      } catch {
        // keep the generic reason
      }
      settleConnect(new Error(reason));
    } else if (type === "1") {
      this.connected = false;
    }
  }

  emitWithAck(event, data) {
    const id = this.nextAckId++;
    return new Promise((resolve) => {
      this.pendingAcks.set(id, resolve);
      this.ws.send(`42${id}${JSON.stringify([event, data])}`);
    });
  }

  close() {
    this.ws.terminate();
  }
}

/** The official client, exactly as a browser page or bot would use it. */
class OfficialClient extends Client {
  constructor(index, token) {
    super(index, token);
    this.kind = "socket.io-client";
  }

  connect(url, timeoutMs) {
    return new Promise((resolve, reject) => {
      this.socket = io(url, { auth: { token: this.token }, reconnection: false, forceNew: true, timeout: timeoutMs });
      this.socket.once("connect", () => {
        this.connected = true;
        resolve(this);
      });
      this.socket.once("connect_error", (error) => {
        this.socket.close();
        reject(error);
      });
      this.socket.on("disconnect", () => {
        this.connected = false;
      });
      this.socket.onAny((event, data) => this.dispatch(event, data));
    });
  }

  emitWithAck(event, data) {
    return this.socket.emitWithAck(event, data);
  }

  close() {
    this.socket.close();
  }
}

function percentiles(values) {
  if (values.length === 0) return { count: 0, p50: null, p95: null, p99: null, max: null, mean: null };
  const sorted = Float64Array.from(values).sort();
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  let sum = 0;
  for (const value of sorted) sum += value;
  const round = (value) => Math.round(value * 100) / 100;
  return {
    count: sorted.length,
    p50: round(at(0.5)),
    p95: round(at(0.95)),
    p99: round(at(0.99)),
    max: round(sorted[sorted.length - 1]),
    mean: round(sum / sorted.length),
  };
}

/** Run `worker` over `items` with at most `concurrency` in flight. */
async function pool(items, concurrency, worker) {
  let next = 0;
  async function lane() {
    while (next < items.length) {
      const item = items[next++];
      await worker(item);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane));
}

/** A small seeded PRNG, so a rerun picks the same rooms in the same order. */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const commands = {
  /** Open sockets for `tokens`, the first `official` of them with socket.io-client. */
  async connect({ url, tokens, official = 0, concurrency = 50, timeout_ms = 30000 }) {
    const started = performance.now();
    const errors = {};
    const fresh = tokens.map((token, offset) => {
      const index = clients.length + offset;
      return offset < official ? new OfficialClient(index, token) : new ThinClient(index, token);
    });
    clients.push(...fresh);
    let connected = 0;
    await pool(fresh, concurrency, async (client) => {
      try {
        await client.connect(url, timeout_ms);
        connected += 1;
      } catch (error) {
        count(errors, error.message || String(error));
      }
    });
    const seconds = (performance.now() - started) / 1000;
    return {
      first_index: fresh.length ? fresh[0].index : clients.length,
      requested: tokens.length,
      connected,
      failed: tokens.length - connected,
      errors,
      seconds,
      per_s: connected / seconds,
    };
  },

  /** Every listed client joins `room` through the acked `join` event. */
  async join({ room, clients: indices, concurrency = 20 }) {
    const started = performance.now();
    const errors = {};
    let joined = 0;
    await pool(indices, concurrency, async (index) => {
      const answer = await clients[index].emitWithAck("join", { room });
      if (answer && answer.ok) joined += 1;
      else count(errors, answer?.error?.code || "no answer");
    });
    return { room, joined, errors, seconds: (performance.now() - started) / 1000 };
  },

  /**
   * Post `rate` messages per second for `seconds` into `rooms` (each {name, members}), senders
   * taken in turn from each room's members; then wait up to `drain_seconds` for every ack and
   * every delivery, and count what each member received.
   *
   * `room_choice`: "turn" sends to the rooms in turn; "random" picks each message's room at
   * random (a fixed seed), so each room sees the irregular gaps of independent senders.
   *
   * `reads`: every client behaves as static/js/chat.js does with the room open and visible: each
   * live message, and each ack of its own message, (re)starts a `read_delay_ms` (200 ms) timer;
   * when it fires, the client sends the acked `read` event `{room, id}` with the newest id it
   * holds, unless it already reported that id. Reads are waited for like acks and counted.
   */
  async traffic({
    run_id,
    rooms,
    rate,
    seconds,
    drain_seconds = 10,
    return_acked = false,
    room_choice = "turn",
    reads = false,
    read_delay_ms = 200,
    seed = 1,
  }) {
    const total = Math.max(1, Math.round(rate * seconds));
    const plans = rooms.map((room) => ({ ...room, memberSet: new Set(room.members), turn: 0 }));
    const random = mulberry32(seed);
    const sent = new Array(total);
    const deliveryMs = [];
    const ackMs = [];
    const errors = {};
    let acked = 0;
    let answered = 0;
    let delivered = 0;
    let duplicates = 0;
    let unexpected = 0;
    let stray = 0;
    let expected = 0;
    let lastDelivery = 0;
    let lastAck = 0;
    let sending = true;
    for (const client of clients) client.seen = new Set();
    const loopDelay = monitorEventLoopDelay({ resolution: 5 });
    loopDelay.enable();

    // Browser read markers: per client, the newest id held, the id last reported, the timer.
    const readStates = new Map();
    const readAckMs = [];
    const readErrors = {};
    const readCounts = { sent: 0, sent_while_sending: 0, ok: 0, answered: 0 };
    let readTimers = 0;
    const fireRead = (client, state) => {
      state.timer = null;
      readTimers -= 1;
      if (state.newest <= state.readSent) return;
      state.readSent = state.newest;
      readCounts.sent += 1;
      if (sending) readCounts.sent_while_sending += 1;
      const t = performance.now();
      client.emitWithAck("read", { room: state.room, id: state.newest }).then((answer) => {
        readCounts.answered += 1;
        readAckMs.push(performance.now() - t);
        if (answer && answer.ok) readCounts.ok += 1;
        else count(readErrors, answer?.error?.code || "malformed ack");
      });
    };
    const noteSeen = (client, room, id) => {
      if (!reads) return;
      let state = readStates.get(client);
      if (!state) {
        state = { room, newest: 0, readSent: 0, timer: null };
        readStates.set(client, state);
      }
      if (id > state.newest) state.newest = id;
      if (state.timer) clearTimeout(state.timer);
      else readTimers += 1;
      state.timer = setTimeout(() => fireRead(client, state), read_delay_ms);
    };

    messageHandler = (client, message) => {
      const now = performance.now();
      let stamp;
      try {
        stamp = JSON.parse(message.body);
      } catch {
        stray += 1;
        return;
      }
      const record = stamp && stamp.r === run_id ? sent[stamp.s] : undefined;
      if (!record) {
        stray += 1;
        return;
      }
      if (client.seen.has(stamp.s)) {
        duplicates += 1;
        return;
      }
      client.seen.add(stamp.s);
      if (client.index === record.sender || !record.plan.memberSet.has(client.index)) unexpected += 1;
      record.deliveries += 1;
      delivered += 1;
      lastDelivery = now;
      deliveryMs.push(now - stamp.t);
      noteSeen(client, message.room, message.id);
    };

    const sendOne = (seq) => {
      const plan = room_choice === "random" ? plans[Math.floor(random() * plans.length)] : plans[seq % plans.length];
      const sender = plan.members[plan.turn++ % plan.members.length];
      const t = performance.now();
      const record = { plan, sender, deliveries: 0, ok: false, id: null, clientId: `${run_id}-${seq}` };
      sent[seq] = record;
      clients[sender]
        .emitWithAck("message", { room: plan.name, body: JSON.stringify({ r: run_id, s: seq, t }), client_id: record.clientId })
        .then((answer) => {
          answered += 1;
          lastAck = performance.now();
          ackMs.push(lastAck - t);
          if (answer && answer.ok) {
            record.ok = true;
            record.id = answer.message.id;
            acked += 1;
            expected += plan.members.length - 1;
            noteSeen(clients[sender], plan.name, answer.message.id);
          } else {
            count(errors, answer?.error?.code || "malformed ack");
          }
        });
    };

    const started = performance.now();
    let seq = 0;
    await new Promise((resolve) => {
      const tick = () => {
        const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
        while (seq < due) sendOne(seq++);
        if (seq >= total) resolve();
        else setTimeout(tick, 1);
      };
      tick();
    });
    const sendEnded = performance.now();
    sending = false;
    const sendSeconds = (sendEnded - started) / 1000;
    const drainDeadline = performance.now() + drain_seconds * 1000;
    const busy = () => answered < total || delivered < expected || readTimers > 0 || readCounts.answered < readCounts.sent;
    while (performance.now() < drainDeadline && busy()) await sleep(10);
    const drained = !busy();
    messageHandler = null;
    loopDelay.disable();
    for (const state of readStates.values()) if (state.timer) clearTimeout(state.timer);

    let missing = 0;
    for (const record of sent) if (record.ok) missing += Math.max(0, record.plan.members.length - 1 - record.deliveries);
    const deliverySpan = lastDelivery > started ? (lastDelivery - started) / 1000 : sendSeconds;
    const result = {
      rate,
      sent: total,
      acked,
      errors,
      unanswered: total - answered,
      expected,
      delivered,
      missing,
      duplicates,
      unexpected,
      stray,
      drained,
      send_seconds: sendSeconds,
      achieved_rate: total / sendSeconds,
      deliveries_per_s: delivered / deliverySpan,
      // How long after the last send the last delivery or ack came: a server that keeps up
      // finishes within a few milliseconds, one with a backlog takes the backlog's length.
      tail_ms: Math.max(0, Math.max(lastDelivery, lastAck) - sendEnded),
      latency_ms: percentiles(deliveryMs),
      ack_ms: percentiles(ackMs),
      // The histogram counts each 5 ms sampling period itself; what is left is the loop's lag.
      loop_delay_ms: {
        p50: Math.max(0, loopDelay.percentile(50) / 1e6 - 5),
        p99: Math.max(0, loopDelay.percentile(99) / 1e6 - 5),
        max: Math.max(0, loopDelay.max / 1e6 - 5),
      },
    };
    if (reads) {
      result.reads = {
        sent: readCounts.sent,
        sent_while_sending: readCounts.sent_while_sending,
        per_s_while_sending: readCounts.sent_while_sending / sendSeconds,
        ok: readCounts.ok,
        errors: readErrors,
        unanswered: readCounts.sent - readCounts.answered,
        ack_ms: percentiles(readAckMs),
      };
    }
    if (return_acked) {
      result.acked_messages = sent.filter((record) => record.ok).map((record) => [record.id, record.clientId]);
    }
    return result;
  },

  /** Acked request/response round trips from one client, `inflight` outstanding at a time. */
  async acks({ client: index, event, payload, seconds, inflight = 1 }) {
    const client = clients[index];
    const latencies = [];
    const errors = {};
    let ok = 0;
    const started = performance.now();
    const stopAt = started + seconds * 1000;
    async function lane() {
      while (performance.now() < stopAt) {
        const t = performance.now();
        const answer = await client.emitWithAck(event, payload);
        latencies.push(performance.now() - t);
        if (answer && answer.ok) ok += 1;
        else count(errors, answer?.error?.code || "malformed ack");
      }
    }
    const deadline = sleep(seconds * 1000 + 10000).then(() => "timeout");
    const outcome = await Promise.race([Promise.all(Array.from({ length: inflight }, lane)), deadline]);
    const elapsed = (performance.now() - started) / 1000;
    return { event, inflight, acks: ok, errors, timed_out: outcome === "timeout", per_s: ok / elapsed, latency_ms: percentiles(latencies) };
  },

  /** Events received so far by every client, summed by name, and how many sockets are still up. */
  async census() {
    const events = {};
    let connected = 0;
    const kinds = {};
    for (const client of clients) {
      if (client.connected) connected += 1;
      count(kinds, client.kind);
      for (const [name, n] of Object.entries(client.events)) count(events, name, n);
    }
    return { clients: clients.length, connected, kinds, events };
  },

  async close() {
    for (const client of clients) client.close();
    clients.length = 0;
    return { closed: true };
  },
};

const input = createInterface({ input: process.stdin, terminal: false });
let queue = Promise.resolve();
input.on("line", (line) => {
  queue = queue.then(async () => {
    let answer;
    try {
      const { command, ...args } = JSON.parse(line);
      if (!commands[command]) throw new Error(`unknown command ${command}`);
      answer = await commands[command](args);
    } catch (error) {
      answer = { error: error.stack || String(error) };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  });
});
input.on("close", () => {
  queue.then(() => process.exit(0));
});
