// The outbox keeps unacknowledged messages in storage, in order, shared between tabs.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Outbox } from "../../static/js/outbox.js";

class MemoryStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

const entry = (id, extra = {}) => ({ client_id: id, kind: "room", to: "general", body: id, status: "sending", ...extra });

test("entries keep their order and survive a new Outbox on the same storage", () => {
  const storage = new MemoryStorage();
  const outbox = new Outbox(7, storage);
  outbox.add(entry("a"));
  outbox.add(entry("b"));
  assert.deepEqual(new Outbox(7, storage).all().map((e) => e.client_id), ["a", "b"]);
  assert.equal(new Outbox(8, storage).all().length, 0);
});

test("two tabs do not overwrite each other's entries", () => {
  const storage = new MemoryStorage();
  const one = new Outbox(1, storage);
  const two = new Outbox(1, storage);
  one.add(entry("a"));
  two.add(entry("b"));
  one.update("a", { status: "failed" });
  assert.deepEqual(two.all().map((e) => [e.client_id, e.status]), [["a", "failed"], ["b", "sending"]]);
  assert.equal(two.remove("a"), true);
  assert.equal(one.remove("a"), false);
  assert.deepEqual(one.all().map((e) => e.client_id), ["b"]);
  one.remove("b");
  assert.equal(storage.getItem("switchboard:outbox:1"), null);
});

test("entries by conversation; DM names compare case-insensitively", () => {
  const outbox = new Outbox(1, new MemoryStorage());
  outbox.add(entry("a"));
  outbox.add(entry("b", { kind: "dm", to: "Bob" }));
  assert.deepEqual(outbox.forConversation("dm", "bob").map((e) => e.client_id), ["b"]);
  assert.deepEqual(outbox.forConversation("room", "general").map((e) => e.client_id), ["a"]);
});

test("corrupt storage is ignored, and a storage that throws leaves the memory copy", () => {
  const storage = new MemoryStorage();
  storage.setItem("switchboard:outbox:1", "{not json");
  const outbox = new Outbox(1, storage);
  assert.deepEqual(outbox.all(), []);
  const broken = { getItem() { throw new Error("denied"); }, setItem() { throw new Error("full"); }, removeItem() {} };
  const fallback = new Outbox(1, broken);
  fallback.add(entry("a"));
  assert.deepEqual(fallback.all().map((e) => e.client_id), ["a"]);
});
