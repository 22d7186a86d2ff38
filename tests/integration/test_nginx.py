"""deploy/nginx.conf in a real nginx in front of two Switchboard servers: sticky sessions and websockets."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
import socketio
import websocket

from tests.integration.recording_client import RecordingClient
from tests.support import api, components
from tests.support.live_server import ROOT, LiveServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]

SITE_CONFIG = ROOT / "deploy" / "nginx.conf"
# The tests reach nginx and the servers as http://127.0.0.1:<port>.
PUBLIC_HOST = "127.0.0.1"
WAIT_SECONDS = 10.0


def nginx_binary() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    components.missing("nginx is not installed (apt-get install nginx)")


def site_config(upstreams: list[str], port: int) -> str:
    """The shipped site config with this test's upstream servers and listening port."""
    text = SITE_CONFIG.read_text()
    server_line = re.compile(r"^[ \t]*server app\d+:5000;\n", re.M)
    assert len(server_line.findall(text)) == 2, "deploy/nginx.conf should list app1 and app2"
    first = server_line.search(text)
    ours = "".join(f"    server {upstream};\n" for upstream in upstreams)
    text = text[: first.start()] + ours + server_line.sub("", text[first.start() :])
    text, listens = re.subn(
        r"^([ \t]*)listen 80( default_server)?;", rf"\1listen 127.0.0.1:{port}\2;", text, flags=re.M
    )
    assert listens == 2
    # What the nginx image's template step writes in (PUBLIC_HOST in docker-compose.yml).
    assert "server_name ${PUBLIC_HOST};" in text
    return text.replace("${PUBLIC_HOST}", PUBLIC_HOST)


def main_config(directory: Path) -> str:
    """What the nginx image's own nginx.conf provides, with every path in the test's directory."""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
user {pwd.getpwuid(os.geteuid()).pw_name};
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} notice;
events {{ worker_connections 1024; }}
http {{
{temp_paths}
    log_format upstreams '$request_uri $upstream_addr $status';
    access_log {directory / "access.log"} upstreams;
    include {directory / "switchboard.conf"};
}}
"""


@dataclass
class Proxy:
    url: str
    servers: list[LiveServer]
    access_log: Path

    def upstream_port(self, server: LiveServer) -> str:
        return f"127.0.0.1:{server.port}"

    def upstreams_of(self, probe: str) -> list[str]:
        """The upstream of every logged request whose URI carries ``probe``, in order."""
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        return [line.split(" ")[1] for line in lines if f"probe={probe}" in line]

    def routed_sessions(self) -> dict[str, requests.Session]:
        """One cookie-keeping HTTP session per upstream, each holding the sb_route cookie nginx gave it."""
        found: dict[str, requests.Session] = {}
        for _ in range(64):
            session, probe = requests.Session(), uuid.uuid4().hex
            answer = session.get(f"{self.url}/healthz?probe={probe}", timeout=10)
            assert answer.status_code == 200
            assert session.cookies.get("sb_route"), answer.headers
            eventually(lambda probe=probe: self.upstreams_of(probe), "the access log line")
            if found.setdefault(self.upstreams_of(probe)[0], session) is not session:
                session.close()
            if len(found) == len(self.servers):
                return found
        raise AssertionError(f"nginx sent every new client to {sorted(found)}")


def eventually(condition: Callable[[], object], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Iterator[Proxy]:
    nginx = nginx_binary()
    redis_url = components.redis_url()
    database_url = components.create_postgres_database()
    prefix = components.unique_name("sbnginx")
    directory = tmp_path_factory.mktemp("nginx")
    # As in docker-compose.yml: every instance serves the same uploaded files, and nginx is the one
    # proxy whose X-Forwarded-* headers are believed.
    env = {
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "ACCESS_LOG": "-",
        "UPLOAD_DIR": str(directory / "uploads"),
        "TRUSTED_PROXIES": "1",
        "TRUSTED_HOSTS": PUBLIC_HOST,
    }
    servers: list[LiveServer] = []
    process = None
    try:
        for name in ("a", "b"):
            server = LiveServer(database_url, directory / f"{name}.log", env=env)
            servers.append(server)
            server.start(migrate=name == "a")
        port = free_port()
        (directory / "switchboard.conf").write_text(site_config([f"127.0.0.1:{s.port}" for s in servers], port))
        (directory / "nginx.conf").write_text(main_config(directory))
        with open(directory / "nginx.out", "wb") as output:
            process = subprocess.Popen(
                [nginx, "-c", str(directory / "nginx.conf"), "-p", str(directory), "-g", "daemon off;"],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proxy = Proxy(f"http://127.0.0.1:{port}", servers, directory / "access.log")

        def answers() -> bool:
            assert process.poll() is None, (directory / "nginx.out").read_text() + (directory / "error.log").read_text()
            try:
                return requests.get(proxy.url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        eventually(answers, "nginx answering /healthz")
        yield proxy
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for server in servers:
            server.stop()
        components.drop_postgres_database(database_url)
        client = redis.Redis.from_url(redis_url)
        leftover = list(client.scan_iter(f"{prefix}:*"))
        if leftover:
            client.delete(*leftover)
        client.close()


def with_body(body: str):
    return lambda data: isinstance(data, dict) and data.get("body") == body


def test_polling_and_websocket_clients_on_different_upstreams_chat_through_nginx(proxy):
    routed = proxy.routed_sessions()
    via_a, via_b = routed[proxy.upstream_port(proxy.servers[0])], routed[proxy.upstream_port(proxy.servers[1])]
    alice = api.register_and_token(proxy.url)
    bob = api.register_and_token(proxy.url)
    poller_probe, websocket_probe = f"poll{uuid.uuid4().hex}", f"ws{uuid.uuid4().hex}"
    poller = RecordingClient(f"{proxy.url}/?probe={poller_probe}", transport="polling", http_session=via_a)
    websocket = RecordingClient(f"{proxy.url}/?probe={websocket_probe}", transport="websocket", http_session=via_b)
    try:
        chat_between(proxy, poller, alice, websocket, bob)
    finally:
        poller.close()
        websocket.close()
        for session in routed.values():
            session.close()
    # nginx logs a websocket when it closes: wait for it, then every request of each client hit one upstream.
    eventually(lambda: proxy.upstreams_of(websocket_probe), "the websocket's access log line")
    poller_upstreams = proxy.upstreams_of(poller_probe)
    assert len(poller_upstreams) >= 3
    assert set(poller_upstreams) == {proxy.upstream_port(proxy.servers[0])}
    assert set(proxy.upstreams_of(websocket_probe)) == {proxy.upstream_port(proxy.servers[1])}


def chat_between(proxy: Proxy, poller: RecordingClient, alice: dict, websocket: RecordingClient, bob: dict) -> None:
    # A browser page served through nginx sends its own origin: nginx must pass the Host that matches it.
    poller.connect(token=alice["token"], origin=proxy.url)
    websocket.connect(token=bob["token"])
    room = f"nginx-{uuid.uuid4().hex[:8]}"
    for client in (poller, websocket):
        assert client.call("join", {"room": room})["ok"] is True

    sent = websocket.call("message", {"room": room, "body": "over a websocket", "client_id": "w1"})
    assert sent["ok"] is True, sent
    assert poller.wait_for("message", with_body("over a websocket")) == sent["message"]
    sent = poller.call("message", {"room": room, "body": "over long-polling", "client_id": "p1"})
    assert sent["ok"] is True, sent
    assert websocket.wait_for("message", with_body("over long-polling")) == sent["message"]
    sent = poller.call("dm", {"to_sid": websocket.sid, "body": "to your socket", "client_id": "p2"})
    assert sent["ok"] is True, sent
    assert websocket.wait_for("dm", with_body("to your socket")) == sent["message"]


def test_a_default_client_gets_a_route_cookie_and_upgrades_on_its_own_upstream(proxy):
    account = api.register_and_token(proxy.url)
    probe = f"up{uuid.uuid4().hex}"
    client = socketio.Client(reconnection=False)
    try:
        # Default transports: long-polling first, then the websocket upgrade, like the browser page.
        client.connect(f"{proxy.url}/?probe={probe}", auth={"token": account["token"]}, wait_timeout=WAIT_SECONDS)
        assert client.eio.http.cookies.get("sb_route")
        eventually(lambda: client.transport() == "websocket", "the websocket upgrade")
        answer = client.call("who", {}, timeout=WAIT_SECONDS)
        assert account["user"]["username"] in [entry["user"]["username"] for entry in answer["users"]]
    finally:
        client.disconnect()
        client.shutdown()
    eventually(lambda: any("transport=websocket" in line for line in _lines(proxy, probe)), "the websocket log line")
    assert len(set(proxy.upstreams_of(probe))) == 1
    assert any("transport=polling" in line for line in _lines(proxy, probe))


def _lines(proxy: Proxy, probe: str) -> list[str]:
    text = proxy.access_log.read_text() if proxy.access_log.exists() else ""
    return [line for line in text.splitlines() if f"probe={probe}" in line]


@pytest.mark.parametrize(("origin", "status"), [("http://evil.example", 400), (None, 200), ("self", 200)])
def test_the_origin_check_still_holds_through_nginx(proxy, origin, status):
    headers = {} if origin is None else {"Origin": proxy.url if origin == "self" else origin}
    handshake = requests.get(f"{proxy.url}/socket.io/?EIO=4&transport=polling", headers=headers, timeout=10)
    assert handshake.status_code == status, handshake.text


def test_metrics_are_not_served_through_nginx(proxy):
    """Scrapes go to each instance; through nginx every request would come from nginx's own address."""
    assert requests.get(f"{proxy.url}/metrics", timeout=10).status_code == 404
    direct = requests.get(f"{proxy.servers[0].url}/metrics", timeout=10)
    assert direct.status_code == 200 and "switchboard_sockets_connected" in direct.text


def test_a_10_mb_upload_through_nginx_is_served_by_every_instance(proxy):
    account = api.register_and_token(proxy.url)
    headers = {"Authorization": f"Bearer {account['token']}"}
    sessions = proxy.routed_sessions()
    first, second = (sessions[proxy.upstream_port(server)] for server in proxy.servers)
    data = os.urandom(10 * 1024 * 1024)

    uploaded = first.post(f"{proxy.url}/api/uploads", files={"file": ("big.bin", data)}, headers=headers, timeout=60)

    assert uploaded.status_code == 201, uploaded.text[:500]
    attachment = uploaded.json()["attachment"]
    assert attachment["size"] == len(data)
    for session in (first, second):
        served = session.get(proxy.url + attachment["url"], headers=headers, timeout=60)
        assert served.status_code == 200
        assert served.content == data
    too_big = first.post(
        f"{proxy.url}/api/uploads", files={"file": ("bigger.bin", data + b"x")}, headers=headers, timeout=60
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "too_large"


def test_security_headers_pass_through_nginx_and_redirects_stay_relative(proxy):
    for path in ("/login", "/healthz", "/static/css/app.css"):
        response = requests.get(proxy.url + path, timeout=WAIT_SECONDS)
        assert response.status_code == 200, path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Referrer-Policy"] == "same-origin", path

    redirect = requests.get(proxy.url + "/", allow_redirects=False, timeout=10)
    assert redirect.status_code == 302
    assert redirect.headers["Location"] == "/login?next=/"


@pytest.mark.parametrize("path", ["/", "/healthz", "/login", "/socket.io/?EIO=4&transport=polling"])
@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", ""])
def test_nginx_answers_400_to_another_host_and_never_forwards_it(proxy, path, host):
    probe = uuid.uuid4().hex
    separator = "&" if "?" in path else "?"
    response = requests.get(
        f"{proxy.url}{path}{separator}probe={probe}", headers={"Host": host}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 400
    eventually(lambda: proxy.upstreams_of(probe), "the access log line")
    assert proxy.upstreams_of(probe) == ["-"]


def websocket_opens(base_url: str, **options) -> bool:
    """Whether a websocket handshake gets as far as the Engine.IO open packet."""
    url = f"{base_url.replace('http://', 'ws://')}/socket.io/?EIO=4&transport=websocket"
    try:
        ws = websocket.create_connection(url, timeout=WAIT_SECONDS, suppress_origin=True, **options)
    except websocket.WebSocketBadStatusException as refused:
        assert refused.status_code == 400
        return False
    try:
        packet = ws.recv()
        return bool(packet) and packet.startswith("0{")
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return False
    finally:
        ws.close()
        ws.shutdown()


def test_a_websocket_for_another_host_is_refused_by_nginx_and_by_the_app(proxy):
    """nginx refuses it with 400; an instance reached directly never opens it either (TRUSTED_HOSTS)."""
    for base in (proxy.url, proxy.servers[0].url):
        assert not websocket_opens(base, host="evil.example"), base
        assert websocket_opens(base), base
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(
            f"{proxy.url.replace('http://', 'ws://')}/socket.io/?EIO=4&transport=websocket",
            host="evil.example",
            timeout=WAIT_SECONDS,
            suppress_origin=True,
        )
    direct = requests.get(f"{proxy.servers[0].url}/healthz", headers={"Host": "evil.example"}, timeout=10)
    assert direct.status_code == 400 and direct.json()["error"]["code"] == "invalid"
