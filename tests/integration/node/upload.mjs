// Binary uploads with the official socket.io-client over one forced transport, then the file over HTTP.
//
// Usage: node upload.mjs '{"url", "token", "transport": "websocket"|"polling", "imagePath": FILE, "limit": BYTES}'
// Prints one JSON line describing what the client saw; the assertions live in pytest.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

import { io } from "socket.io-client";

import { ack, record, run, scenario, waitFor } from "./harness.mjs";

const { url, token, transport, imagePath, limit } = scenario();

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

run(async () => {
  const socket = io(url, { auth: { token }, forceNew: true, reconnection: false, transports: [transport] });
  const received = record(socket);
  await waitFor(socket, received, "session");
  const bytes = readFileSync(imagePath);

  const imageAck = await ack(socket, "upload", { name: "camera roll.txt", type: "text/plain", data: bytes });
  const tooLargeAck = await ack(socket, "upload", { name: "big.bin", type: "application/octet-stream", data: Buffer.alloc(limit + 1, 7) });
  const connectedAfterTooLarge = socket.connected;
  const atLimitAck = await ack(socket, "upload", { name: "exactly.bin", data: Buffer.alloc(limit, 9) });
  const stringDataAck = await ack(socket, "upload", { name: "text.txt", data: "not binary" });

  const messageAck = imageAck.ok
    ? await ack(socket, "message", { room: "general", body: "", client_id: `node-att-${Date.now()}`, attachments: [imageAck.attachment.id] })
    : null;

  let served = null;
  if (imageAck.ok) {
    const response = await fetch(new URL(imageAck.attachment.url, url), { headers: { Authorization: `Bearer ${token}` } });
    const body = Buffer.from(await response.arrayBuffer());
    served = { status: response.status, type: response.headers.get("content-type"), sha256: sha256(body) };
  }
  const transportUsed = socket.io.engine.transport.name;
  socket.disconnect();
  return {
    transportUsed,
    sentSha256: sha256(bytes),
    imageAck,
    tooLargeAck,
    connectedAfterTooLarge,
    atLimitAck,
    stringDataAck,
    messageAck,
    served,
  };
});
