// Messages written but not yet acknowledged, kept in localStorage per user so a reload loses none.
//
// An entry is {client_id, kind: "room"|"dm", to, body, created_at, status: "sending"|"failed", error}.
// Every change re-reads storage first, so two tabs of one user do not overwrite each other's entries.

export class Outbox {
  constructor(userId, storage = globalThis.localStorage) {
    this.key = `switchboard:outbox:${userId}`;
    this.storage = storage;
    this.memory = [];
  }

  all() {
    try {
      const stored = JSON.parse(this.storage.getItem(this.key) || "[]");
      if (Array.isArray(stored)) this.memory = stored.filter(isEntry);
    } catch {
      // Storage disabled or corrupt: the in-memory copy still carries this page.
    }
    return this.memory.slice();
  }

  get(clientId) {
    return this.all().find((entry) => entry.client_id === clientId) || null;
  }

  forConversation(kind, name) {
    const target = kind === "dm" ? name.toLowerCase() : name;
    return this.all().filter(
      (entry) => entry.kind === kind && (kind === "dm" ? entry.to.toLowerCase() : entry.to) === target,
    );
  }

  add(entry) {
    const entries = this.all().filter((stored) => stored.client_id !== entry.client_id);
    entries.push(entry);
    this.save(entries);
    return entry;
  }

  update(clientId, changes) {
    let updated = null;
    const entries = this.all().map((entry) => {
      if (entry.client_id !== clientId) return entry;
      updated = { ...entry, ...changes };
      return updated;
    });
    if (updated) this.save(entries);
    return updated;
  }

  remove(clientId) {
    const entries = this.all();
    const kept = entries.filter((entry) => entry.client_id !== clientId);
    if (kept.length !== entries.length) this.save(kept);
    return kept.length !== entries.length;
  }

  save(entries) {
    this.memory = entries;
    try {
      if (entries.length) this.storage.setItem(this.key, JSON.stringify(entries));
      else this.storage.removeItem(this.key);
    } catch {
      // Quota exceeded or storage disabled: keep going in memory only.
    }
  }
}

function isEntry(entry) {
  return (
    entry &&
    typeof entry.client_id === "string" &&
    (entry.kind === "room" || entry.kind === "dm") &&
    typeof entry.to === "string" &&
    typeof entry.body === "string"
  );
}
