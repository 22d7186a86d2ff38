"""Moderation on a real server: an admin's python-socketio client kicks and bans users whose
sockets are connected over websocket and over long-polling."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import requests

from tests.integration.recording_client import WAIT_SECONDS, RecordingClient

pytestmark = pytest.mark.integration

ADMIN = "/admin"


def test_admin_kicks_sockets_on_both_transports(chat_server, account, connect):
    boss = account(admin=True, prefix="boss")
    admin = connect(boss, "websocket", (ADMIN,))
    member = account(prefix="alice")
    by_websocket = connect(member, "websocket")
    by_polling = connect(member, "polling")

    # The stats push comes without being asked for, and counts these sockets.
    pushed = admin.wait_for("stats", lambda stats: stats["sockets"] >= 2, namespace=ADMIN)
    assert pushed["users_online"] >= 1
    assert any(room["name"] == "general" for room in pushed["rooms"])

    listed = {s["sid"]: s for s in admin.call("sockets", {}, ADMIN)["sockets"]}
    assert listed[by_websocket.sid]["transport"] == "websocket"
    assert listed[by_polling.sid]["transport"] == "polling"
    assert listed[by_polling.sid]["user"] == member.user

    sids = [by_polling.sid, by_websocket.sid]
    for kicked, survivor in ((by_polling, by_websocket), (by_websocket, None)):
        answer = admin.call("kick", {"sid": kicked.sid}, ADMIN)
        assert answer["ok"] is True, answer
        assert kicked.wait_for("kicked") == {"reason": "kicked by an admin"}
        kicked.wait_disconnected()
        if survivor is not None:
            assert survivor.connected
            assert survivor.call("who", {})["ok"] is True  # a round trip: anything sent to it has arrived
            assert survivor.received("kicked") == []

    assert admin.call("kick", {"sid": "gone"}, ADMIN)["error"]["code"] == "not_found"
    mine = [e for e in admin.call("audit", {}, ADMIN)["entries"] if e["admin"]["id"] == boss.user["id"]]
    assert [(e["action"], e["target"]) for e in mine] == [("kick", sid) for sid in reversed(sids)]


def test_sockets_reports_the_transport_after_an_upgrade(chat_server, account, connect):
    admin = connect(account(admin=True, prefix="boss"), "polling", (ADMIN,))
    member = account(prefix="alice")
    upgrading = RecordingClient(chat_server.url, transport="polling")
    # Default transports: long-polling first, then the websocket upgrade, as the browser does.
    upgrading.sio.connect(chat_server.url, auth={"token": member.token}, wait_timeout=WAIT_SECONDS)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        transport = None
        while time.monotonic() < deadline and transport != "websocket":
            listed = {s["sid"]: s for s in admin.call("sockets", {}, ADMIN)["sockets"]}
            transport = listed[upgrading.sid]["transport"]
            time.sleep(0.1)
        assert transport == "websocket"
    finally:
        upgrading.close()


def test_admin_bans_a_user_on_both_transports_and_every_door_closes(chat_server, account, connect, open_client):
    admin = connect(account(admin=True, prefix="boss"), "polling", (ADMIN,))
    member = account(prefix="alice")
    sockets = [connect(member, transport) for transport in ("websocket", "polling")]

    answer = admin.call("ban", {"user": member.username, "reason": "spam"}, ADMIN)

    assert answer["ok"] is True and answer["user"]["banned"] is True
    for client in sockets:
        assert client.wait_for("kicked") == {"reason": "banned"}
        client.wait_disconnected()

    for transport in ("websocket", "polling"):
        refused = open_client(chat_server.url, transport).connect_refused(token=member.token)
        assert refused["/"] == [{"message": "banned"}]
    token = requests.post(
        f"{chat_server.url}/api/token", json={"username": member.username, "password": member.password}, timeout=10
    )
    assert token.status_code == 403 and token.json()["error"]["code"] == "banned"

    assert admin.call("unban", {"user": member.username}, ADMIN)["ok"] is True
    # The ban ended every session and token issued before it; the unbanned user signs in afresh.
    old = open_client(chat_server.url, "websocket").connect_refused(token=member.token)
    assert old["/"] == [{"message": "unauthorized"}]
    token = requests.post(
        f"{chat_server.url}/api/token", json={"username": member.username, "password": member.password}, timeout=10
    )
    assert token.status_code == 200
    back = connect(replace(member, token=token.json()["token"]), "websocket")
    assert back.wait_for("session")["user"] == member.user
    about_them = [e["action"] for e in admin.call("audit", {}, ADMIN)["entries"] if e["target"] == member.username]
    assert about_them == ["unban", "ban"]


def test_admin_namespace_refusals_name_their_reason(chat_server, account, open_client):
    member = account(prefix="alice")

    anonymous = open_client(chat_server.url, "polling", (ADMIN,)).connect_refused()
    assert anonymous[ADMIN] == [{"message": "unauthorized"}]
    not_admin = open_client(chat_server.url, "websocket", (ADMIN,)).connect_refused(token=member.token)
    assert not_admin[ADMIN] == [{"message": "forbidden"}]
