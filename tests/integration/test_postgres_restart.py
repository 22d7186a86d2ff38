"""A server survives a restart of its PostgreSQL: events answer internal meanwhile, then work again within seconds."""

from __future__ import annotations

import gc
import time
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app.client import SwitchboardClient
from app.client.client import ConnectionLost, RequestFailed
from tests.client.harness import ENGINEIO_LEAKED_WEBSOCKET, assert_all_converge, seed_accounts
from tests.support.private_postgres import PrivatePostgres

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ROOM = "dbdown"
PROBES = "dbprobes"  # probes bypass the outbox, so they go where convergence is not checked
BACK_WITHIN_SECONDS = 5
CONVERGE_SECONDS = 30


def probe(client: SwitchboardClient) -> dict:
    """One send outside the client's outbox, so its ack is seen as the server gave it."""
    try:
        return {"ok": True, **client.call("message", {"room": PROBES, "body": "probe", "client_id": uuid.uuid4().hex})}
    except RequestFailed as refused:
        return {"ok": False, "error": refused.error}
    except ConnectionLost:
        return {"ok": False, "error": {"code": "reconnecting"}}


def database_errors(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "switchboard_database_errors_total"
    )


@pytest.fixture
def private_postgres():
    server = PrivatePostgres().init().start()
    yield server
    server.remove()


@pytest.mark.timeout(240)
@pytest.mark.filterwarnings(ENGINEIO_LEAKED_WEBSOCKET)
def test_a_server_answers_again_and_clients_converge_after_postgres_restarts(live_server_factory, private_postgres):
    server = live_server_factory(private_postgres.url, env={"RATE_LIMIT_COUNT": "100000"})
    accounts = seed_accounts(server, 2, prefix="dbdown", rooms=(ROOM, PROBES))
    clients: list[SwitchboardClient] = []
    try:
        for account, transports in zip(accounts, (["websocket"], ["polling"]), strict=True):
            client = SwitchboardClient(
                server.url, account.token, transports=transports, reconnection_delay=0.1, reconnection_delay_max=0.5
            )
            clients.append(client.connect())
        for client in clients:
            for n in range(3):
                client.send(ROOM, f"before #{n}")
        for client in clients:
            client.flush(CONVERGE_SECONDS)
        errors_before = database_errors(server.url)

        private_postgres.stop()
        # Down: sends are answered internal promptly and nothing is stored; the health check says so.
        for client in clients:
            started = time.monotonic()
            answer = probe(client)
            assert answer == {"ok": False, "error": {"code": "internal", "message": "internal server error"}}
            assert time.monotonic() - started < BACK_WITHIN_SECONDS
        assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 503
        assert database_errors(server.url) > errors_before
        during = [client.send(ROOM, f"during #{index}") for index, client in enumerate(clients)]

        private_postgres.start()
        back = time.monotonic()
        for client in clients:
            while not (answer := probe(client))["ok"]:
                assert answer["error"]["code"] in ("internal", "reconnecting"), answer
                assert time.monotonic() - back < BACK_WITHIN_SECONDS, f"still {answer} after PostgreSQL came back"
                time.sleep(0.1)
        assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
        for client in clients:
            client.flush(CONVERGE_SECONDS)
        assert all(item.message is not None for item in during)
        assert_all_converge(clients, server.database_url, ROOM, CONVERGE_SECONDS, " after PostgreSQL came back")
        assert all(client.rejected == [] for client in clients)
    finally:
        for client in clients:
            client.close()
        clients.clear()
        gc.collect()
