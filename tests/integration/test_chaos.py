"""Exactly once, in order, and every edit, deletion and reaction, while connections drop at random
and some clients fall back to polling."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from app.client import SwitchboardClient
from tests.client.harness import (
    ENGINEIO_LEAKED_WEBSOCKET,
    DroppingProxy,
    ScriptedUser,
    assert_all_converge,
    close_and_collect,
    essentials,
    seed_accounts,
    stored_messages,
)

ROOM = "chaos"
CLIENTS = 5
MESSAGES_EACH = 100
# The rate limit is not under test here; 500 messages at 20 per 10 s would take minutes.
SERVER_ENV = {"RATE_LIMIT_COUNT": "100000"}
# Starting transports: websocket only, polling upgraded to websocket, and polling only.
START_TRANSPORTS = [["websocket"], ["websocket"], None, None, ["polling"]]
# Each client is dropped at most this often, so a slow machine still gets through the burst.
MAX_DROPS_EACH = 8
SEND_DEADLINE_SECONDS = 150
CHANGE_WAIT_SECONDS = 60
# Messages each client sends between two rounds of edits, deletions and reactions: each change is
# a commit of its own, so this sets how long the test takes.
BATCH = 20
CONVERGE_SECONDS = 30


@pytest.mark.integration
@pytest.mark.timeout(240)
@pytest.mark.filterwarnings(ENGINEIO_LEAKED_WEBSOCKET)
def test_every_client_ends_with_the_stored_history_through_random_drops(live_server_factory):
    """Each client sends its messages in batches and, between batches, edits and deletes some of
    its own and reacts to others' (tests.client.harness.ScriptedUser) while connections drop; every
    client ends with exactly the stored state of every message: body, deletion, reactions, rev."""
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"chaos seed {seed} (set CHAOS_SEED={seed} to replay the same drop decisions)")
    rng = random.Random(seed)

    threads_before = set(threading.enumerate())
    server = live_server_factory(env=SERVER_ENV)
    accounts = seed_accounts(server, CLIENTS, prefix="chaos", rooms=(ROOM,))
    proxies = [DroppingProxy(server.port) for _ in accounts]
    clients = [
        SwitchboardClient(
            proxy.url,
            account.token,
            transports=transports,
            reconnection_delay=0.05,
            reconnection_delay_max=0.5,
        )
        for proxy, account, transports in zip(proxies, accounts, START_TRANSPORTS, strict=True)
    ]
    try:
        for client in clients:
            client.connect()
        scripts = [
            ScriptedUser(
                client, account.username, ROOM, MESSAGES_EACH, seed=seed + index, wait=CHANGE_WAIT_SECONDS, batch=BATCH
            ).start()
            for index, (account, client) in enumerate(zip(accounts, clients, strict=True))
        ]

        # One cut always lands while a message's ack is on its way back: the server stores the
        # message, its answer is lost, and the client must resend it, to be stored only once.
        proxies[0].swallowing = True
        started = time.monotonic()
        while not any(item.event == "message" for item in clients[0].pending):
            assert time.monotonic() - started < SEND_DEADLINE_SECONDS, f"client 0 never sent (seed {seed})"
            time.sleep(0.01)
        time.sleep(0.3)
        proxies[0].drop()
        proxies[0].swallowing = False

        # Every client is dropped at least twice, then random clients at random moments.
        victims = [index for index in range(CLIENTS) for _ in range(2)]
        rng.shuffle(victims)
        # A planned drop counts once its client has connected again: a long-polling client cut
        # between two requests may never notice, and is then cut once more.
        awaiting: dict[int, tuple[int, float]] = {}  # planned victim -> (connections before the cut, when)
        downgrades = 0
        deadline = time.monotonic() + SEND_DEADLINE_SECONDS
        while victims or any(script.running for script in scripts) or any(client.pending for client in clients):
            assert time.monotonic() < deadline, f"messages still pending after {SEND_DEADLINE_SECONDS}s (seed {seed})"
            time.sleep(rng.uniform(0.02, 0.25))
            index = victims[-1] if victims else rng.randrange(CLIENTS)
            if victims and index in awaiting:
                before, when = awaiting[index]
                if clients[index].connections > before:
                    del awaiting[index]
                    victims.pop()  # back after its planned drop
                    continue
                if not clients[index].connected or time.monotonic() - when < 1.0:
                    continue  # still reconnecting, or has not noticed yet
            elif not clients[index].connected or (not victims and proxies[index].drops >= MAX_DROPS_EACH):
                continue  # still reconnecting from the last drop, or dropped enough
            if victims:
                awaiting[index] = (clients[index].connections, time.monotonic())
            # The first drop always blocks the websocket, so the polling fallback is exercised every run.
            roll = 0.0 if downgrades == 0 else rng.random()
            if roll < 0.3:
                clients[index].use_transports(["polling"])  # the websocket is blocked from now on
                downgrades += 1
            elif roll < 0.45:
                clients[index].use_transports(None)
            proxies[index].drop()
        for script in scripts:
            script.join(0)  # finished: raises what went wrong in it, if anything

        expected = assert_all_converge(clients, server.database_url, ROOM, CONVERGE_SECONDS, f" (seed {seed})")

        rows = stored_messages(server.database_url)
    finally:
        close_and_collect(clients, proxies, threads_before)

    # Exactly once: each client_id stored once, the sender's messages in the order they were sent,
    # each with the body its sender last gave it ("" once deleted).
    assert len(expected) == CLIENTS * MESSAGES_EACH
    for account, client, script in zip(accounts, clients, scripts, strict=True):
        mine = [row for row in rows if row["sender"] == account.username]
        assert [(r["client_id"], r["body"]) for r in mine] == [
            (item.client_id, script.final_body[item.client_id]) for item in script.sent
        ]
        assert client.rejected == []
        # Every ack names the stored row.
        stored_ids = {r["client_id"]: r["id"] for r in mine}
        assert {cid: m["id"] for cid, m in client.acked.items()} == stored_ids
    # In order and without duplicates: the views are equal to the database row for row (checked above).
    for client in clients:
        assert essentials(client.room_messages(ROOM)) == expected

    # Every acknowledged change is the stored state or older than it.
    by_id = {row["id"]: row for row in rows}
    for script in scripts:
        for change in script.changes:
            assert by_id[change["id"]]["rev"] >= change["rev"]
    edited, deleted = sum(1 for r in rows if r["edited_at"]), sum(1 for r in rows if r["deleted"])
    reactions = sum(reaction["count"] for r in rows for reaction in r["reactions"])
    assert edited and deleted and reactions, (edited, deleted, reactions)

    # The chaos really happened: reconnections, resent messages, reconnections over polling, and
    # changes made while a client was away that its catch-up brought.
    assert all(client.connections >= 2 for client in clients), [c.connections for c in clients]
    resends = sum(item.attempts - 1 for script in scripts for item in script.sent)
    assert resends > 0
    assert sum(client.changes_caught_up for client in clients) > 0
    assert downgrades > 0
    assert any("polling" in client.transports_used[1:] for client in clients)
    print(
        f"drops {[p.drops for p in proxies]}, connections {[c.connections for c in clients]}, "
        f"resends {resends}, duplicates dropped {[c.duplicates_dropped for c in clients]}, "
        f"changes {sum(len(script.changes) for script in scripts)} (edited {edited}, deleted {deleted}, "
        f"reactions {reactions}), caught up {[c.changes_caught_up for c in clients]}, "
        f"connections replaced {[c.replaced_connections for c in clients]}"
    )
