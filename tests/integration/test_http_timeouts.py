"""A client that trickles its request headers, or sends none, is cut off instead of holding a connection."""

from __future__ import annotations

import socket
import time

import pytest
import requests

from tests.integration.conftest import create_account
from tests.integration.engineio_wire import PollingSession, WebSocketSession

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def impatient_server(tmp_path_factory):
    from tests.support.live_server import LiveServer

    folder = tmp_path_factory.mktemp("timeouts")
    env = {"HTTP_HEADER_TIMEOUT_SECONDS": "1", "HTTP_BODY_TIMEOUT_SECONDS": "1"}
    server = LiveServer(f"sqlite:///{folder / 'chat.db'}", folder / "server.log", env=env).start()
    yield server
    server.stop()


def closed_within(connection: socket.socket, seconds: float) -> bool:
    connection.settimeout(seconds)
    try:
        while connection.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"], ids=["nothing", "half the headers"])
def test_a_request_whose_headers_never_end_is_cut_off(impatient_server, sent):
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=5) as connection:
        connection.sendall(sent)
        started = time.monotonic()
        assert closed_within(connection, 5)
        assert time.monotonic() - started < 4


def test_a_body_that_never_arrives_is_cut_off(impatient_server):
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=5) as connection:
        connection.sendall(
            b"POST /api/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        assert closed_within(connection, 5)


def test_ordinary_requests_long_polls_and_websockets_are_unaffected(impatient_server):
    assert requests.get(f"{impatient_server.url}/healthz", timeout=5).status_code == 200
    account = create_account(impatient_server)
    for session in (
        PollingSession(impatient_server.url, account.token),
        WebSocketSession(impatient_server.url, account.token),
    ):
        # Quiet for longer than the timeouts: a long-poll GET waits on the server, a websocket on Engine.IO's pings.
        time.sleep(2.5)
        assert session.call('421["who",{"room":"general"}]', ack_id=1)["ok"] is True
        if isinstance(session, WebSocketSession):
            session.close()
