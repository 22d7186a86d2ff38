"""The contract through the official Node socket.io-client, as browsers and outside clients use it."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.integration

MESSAGE_KEYS = {
    "id",
    "room",
    "sender",
    "recipient",
    "body",
    "client_id",
    "created_at",
    "deleted",
    "rev",
    "edited_at",
    "reply_to",
    "mentions",
    "reactions",
    "attachments",
}


def test_default_transports_room_message_dm_by_sid_and_binary_body(account, chat_server, run_node):
    alice, bob = account(), account()
    room = f"node{uuid.uuid4().hex[:10]}"

    seen = run_node("chat.mjs", {"url": chat_server.url, "alice": alice.token, "bob": bob.token, "room": room})

    # Long-polling first, then the websocket upgrade.
    assert seen["firstTransports"] == ["polling", "polling"]
    assert seen["upgradedTo"] == ["websocket", "websocket"]
    assert [session["user"] for session in seen["sessions"]] == [alice.user, bob.user]
    assert [session["sid"] for session in seen["sessions"]] == seen["socketIds"]
    for join in seen["joins"]:
        assert join["ok"] is True and join["room"]["name"] == room, join

    message_ack = seen["messageAck"]
    assert message_ack["ok"] is True, message_ack
    assert set(message_ack) == {"ok", "message"}
    message = message_ack["message"]
    assert set(message) == MESSAGE_KEYS
    assert message["room"] == room
    assert message["sender"] == alice.user
    assert message["recipient"] is None
    assert message["body"] == "hello from node"
    assert message["deleted"] is False
    assert seen["bobMessage"] == message
    assert seen["aliceEchoes"] == []

    dm_ack = seen["dmAck"]
    assert dm_ack["ok"] is True, dm_ack
    assert dm_ack["message"]["recipient"] == bob.user
    assert dm_ack["message"]["room"] is None
    assert seen["bobDm"] == dm_ack["message"]

    assert seen["binaryAck"]["ok"] is False
    assert seen["binaryAck"]["error"]["code"] == "invalid"
    assert seen["connectedAfterBinary"] is True
    assert seen["afterBinaryAck"]["ok"] is True
    bodies = [stored["body"] for stored in seen["history"]["messages"]]
    assert bodies == ["hello from node", "still here"]


def test_admin_multiplexes_both_namespaces_on_one_connection(account, chat_server, run_node):
    admin = account(admin=True)

    seen = run_node("namespaces.mjs", {"url": chat_server.url, "token": admin.token})

    assert seen["sharedManager"] is True
    assert seen["main"] == {"connected": True, "error": None}
    assert seen["admin"] == {"connected": True, "error": None}
    assert seen["stats"]["ok"] is True
    assert set(seen["stats"]["stats"]) >= {"users_online", "sockets", "rooms", "messages_last_minute"}
    listed = [entry for entry in seen["sockets"]["sockets"] if entry["sid"] == seen["session"]["sid"]]
    assert len(listed) == 1 and listed[0]["user"] == admin.user, seen["sockets"]


def test_non_admin_is_forbidden_on_admin_while_the_main_namespace_stays_connected(account, chat_server, run_node):
    alice = account()

    seen = run_node("namespaces.mjs", {"url": chat_server.url, "token": alice.token})

    assert seen["sharedManager"] is True
    assert seen["admin"] == {"connected": False, "error": "forbidden"}
    assert seen["main"] == {"connected": True, "error": None}
    assert seen["session"]["user"] == alice.user
    assert seen["mainWho"]["ok"] is True
    assert seen["mainStillConnected"] is True


@pytest.mark.parametrize("token", [None, "not-a-token"], ids=["anonymous", "bad-token"])
def test_missing_or_bad_credentials_are_unauthorized_on_both_namespaces(token, chat_server, run_node):
    seen = run_node("namespaces.mjs", {"url": chat_server.url, "token": token})

    assert seen["main"] == {"connected": False, "error": "unauthorized"}
    assert seen["admin"] == {"connected": False, "error": "unauthorized"}


@pytest.mark.parametrize("transports", [None, ["polling"]], ids=["upgraded-websocket", "polling-only"])
def test_packet_over_one_megabyte_closes_both_namespaces_and_spares_other_clients(
    transports, account, connect, chat_server, run_node
):
    admin, bystander, listener = account(admin=True), account(), account()
    bystander_tab, listener_tab = connect(bystander, "websocket"), connect(listener, "polling")

    seen = run_node("oversized.mjs", {"url": chat_server.url, "token": admin.token, "transports": transports})

    assert seen["outcomes"] == [{"connected": True, "error": None}] * 2
    assert seen["transport"] == ("polling" if transports else "websocket")
    assert seen["statsBefore"]["ok"] is True
    # Both namespaces go down together because their shared connection does.
    assert seen["mainReason"] in ("transport close", "transport error"), seen
    assert seen["adminReason"] == seen["mainReason"], seen
    assert seen["connected"] == [False, False]
    answer = bystander_tab.call("message", {"room": "general", "body": "unaffected", "client_id": uuid.uuid4().hex})
    assert answer["ok"] is True, answer
    assert listener_tab.wait_for("message", lambda data: data["id"] == answer["message"]["id"]) == answer["message"]
