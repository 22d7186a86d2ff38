"""Two workers survive a restart of their Redis: events answer again within seconds and every client converges."""

from __future__ import annotations

import gc
import time
import uuid

import pytest

from app.client import SwitchboardClient
from app.client.client import ConnectionLost, RequestFailed
from tests.client.harness import ENGINEIO_LEAKED_WEBSOCKET, assert_all_converge, seed_accounts
from tests.integration.recording_client import RecordingClient
from tests.support import components
from tests.support.private_redis import PrivateRedis

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ROOM = "outage"
BACK_WITHIN_SECONDS = 5
CONVERGE_SECONDS = 30


def probe(client: SwitchboardClient, event: str) -> dict:
    """One request outside the client's outbox, so its ack is seen as the server gave it."""
    payload = {"room": ROOM}
    if event == "message":
        payload.update(body="probe", client_id=uuid.uuid4().hex)
    try:
        return {"ok": True, **client.call(event, payload)}
    except RequestFailed as refused:
        return {"ok": False, "error": refused.error}
    except ConnectionLost:
        # Once its queue is back, a worker closes its connections so that clients catch up.
        return {"ok": False, "error": {"code": "reconnecting"}}


@pytest.mark.timeout(240)
@pytest.mark.filterwarnings(ENGINEIO_LEAKED_WEBSOCKET)
def test_workers_answer_again_and_clients_converge_after_redis_restarts(live_server_factory, tmp_path):
    redis_server = PrivateRedis(tmp_path).start()
    database_url = components.create_postgres_database()
    env = {
        "REDIS_URL": redis_server.url,
        "REDIS_PREFIX": components.unique_name("sboutage"),
        "RATE_LIMIT_COUNT": "100000",
        "PRESENCE_TTL_SECONDS": "3",
    }
    clients: list[SwitchboardClient] = []
    try:
        servers = [live_server_factory(database_url, env=env) for _ in range(2)]
        accounts = seed_accounts(servers[0], 4, prefix="outage", rooms=(ROOM,))
        for index, account in enumerate(accounts):
            client = SwitchboardClient(
                servers[index % 2].url,
                account.token,
                transports=["websocket"] if index < 2 else None,
                reconnection_delay=0.1,
                reconnection_delay_max=0.5,
            )
            clients.append(client.connect())
        for client in clients:
            for n in range(3):
                client.send(ROOM, f"before #{n}")
        for client in clients:
            client.flush(CONVERGE_SECONDS)
        assert_all_converge(clients, database_url, ROOM, CONVERGE_SECONDS, " before the outage")

        redis_server.stop()
        # Down: events that need Redis are answered internal, promptly, and a refused send stores nothing.
        for client in clients[:2]:
            for event in ("message", "who"):
                started = time.monotonic()
                answer = probe(client, event)
                assert answer["ok"] is False and answer["error"]["code"] == "internal", answer
                assert time.monotonic() - started < BACK_WITHIN_SECONDS
        for server in servers:
            newcomer = RecordingClient(server.url, transport="websocket")
            try:
                started = time.monotonic()
                assert newcomer.connect_refused(token=accounts[0].token)["/"] == [{"message": "internal"}]
                assert time.monotonic() - started < BACK_WITHIN_SECONDS
            finally:
                newcomer.close()
        during = [client.send(ROOM, f"during #{index}") for index, client in enumerate(clients)]

        redis_server.start()
        back = time.monotonic()
        for client in clients[:2]:
            while not (answer := probe(client, "who"))["ok"]:
                assert answer["error"]["code"] in ("internal", "reconnecting"), answer
                assert time.monotonic() - back < BACK_WITHIN_SECONDS, f"still {answer} after Redis came back"
                time.sleep(0.1)
        for client in clients:
            for n in range(3):
                client.send(ROOM, f"after #{n}")
        for client in clients:
            client.flush(CONVERGE_SECONDS)
        assert all(item.message is not None for item in during)
        assert_all_converge(clients, database_url, ROOM, CONVERGE_SECONDS, " after Redis came back")
        assert all(client.rejected == [] for client in clients)
    finally:
        for client in clients:
            client.close()
        # Finalise the websockets python-engineio leaks on a server-side drop while the filter applies.
        clients.clear()
        client = None
        gc.collect()
        redis_server.stop()
