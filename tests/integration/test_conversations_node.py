"""Conversations through the official Node socket.io-client against real servers: edits, reactions and
deletions between two clients, catching up with ``sync {"after_rev"}``, and the same across two workers
sharing PostgreSQL and Redis (including a ban that closes an admin's sockets on the other worker)."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.conftest import create_account

pytestmark = pytest.mark.integration


def fresh_room() -> str:
    return f"conv-{uuid.uuid4().hex[:10]}"


def test_edit_react_and_delete_between_two_clients(account, chat_server, run_node):
    alice, bob = account(), account()

    seen = run_node(
        "conversations.mjs",
        {"kind": "round_trip", "url": chat_server.url, "alice": alice.token, "bob": bob.token, "room": fresh_room()},
    )

    posted, edited, reacted, deleted = (seen[k] for k in ("posted", "edited", "reacted", "deleted"))
    assert posted["rev"] > 0 and posted["edited_at"] is None and posted["reactions"] == []
    assert seen["bobEdits"]["ok"] is False and seen["bobEdits"]["error"]["code"] == "forbidden"

    assert edited["ok"] is True and set(edited) == {"ok", "message"}
    assert edited["message"]["body"] == "first, edited" and edited["message"]["edited_at"].endswith("Z")
    assert edited["message"]["rev"] > posted["rev"]
    assert seen["bobSawEdit"] == edited["message"]

    assert reacted["ok"] is True
    assert reacted["message"]["reactions"] == [{"emoji": "🎉", "count": 1, "users": [bob.username]}]
    assert seen["aliceSawReaction"] == reacted["message"]
    assert seen["reactedAgain"] == reacted  # nothing changed, nothing sent

    assert deleted["ok"] is True
    gone = deleted["message"]
    assert (gone["deleted"], gone["body"], gone["reactions"], gone["mentions"]) == (True, "", [], [])
    assert seen["bobSawDeletion"] == gone
    assert seen["bobDeletedEvent"] == {"id": posted["id"], "room": posted["room"]}
    assert seen["deletedAgain"]["ok"] is False and seen["deletedAgain"]["error"]["code"] == "not_found"

    # Each side got the other's changes exactly once, never its own.
    assert seen["aliceUpdates"] == [reacted["message"]]
    assert seen["bobUpdates"] == [edited["message"], gone]
    assert seen["aliceDeletions"] == []
    assert [m for m in seen["history"]["messages"] if m["id"] == posted["id"]] == [gone]


def test_sync_after_rev_catches_up_with_changes_made_while_away(account, chat_server, run_node):
    alice, bob = account(), account()

    seen = run_node(
        "conversations.mjs",
        {
            "kind": "catch_up",
            "url": chat_server.url,
            "alice": alice.token,
            "bob": bob.token,
            "bobName": bob.username,
            "room": fresh_room(),
        },
    )

    changes = [answer["message"] for answer in seen["whileAway"]]
    assert all(answer["ok"] for answer in seen["whileAway"]), seen["whileAway"]
    synced = [message for page in seen["pages"] for message in page["messages"]]
    # Every change after the rev bob had seen, in rev order, each message in its latest state.
    assert synced == changes
    assert [m["rev"] for m in synced] == sorted(m["rev"] for m in synced)
    assert synced[0]["rev"] > seen["seenRev"]
    assert seen["finalRev"] == changes[-1]["rev"]
    assert seen["pages"][-1]["has_more"] is False
    assert seen["bobState"] == seen["truth"]
    assert [m["deleted"] for m in seen["bobState"]] == [False, False, True, False, False]
    # The same changes show in the session bob got on reconnecting.
    room = changes[0]["room"]
    assert seen["session"]["mentions"][room] == 1
    assert seen["session"]["dms"][0]["user"] == alice.user
    assert seen["session"]["dms"][0]["unread"] == 1
    assert seen["session"]["dms"][0]["last"] == changes[-1]


# -- two workers ------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
def test_changes_and_invitations_on_one_worker_reach_clients_on_the_other(cluster, run_node):
    alice, bob = create_account(cluster.a), create_account(cluster.a)

    seen = run_node(
        "conversations.mjs",
        {
            "kind": "across_workers",
            "a": cluster.a.url,
            "b": cluster.b.url,
            "alice": alice.token,
            "bob": bob.token,
            "bobName": bob.username,
            "room": fresh_room(),
        },
    )

    assert seen["bobGot"] == seen["posted"]
    edited = seen["edited"]["message"]
    assert edited["mentions"] == [bob.username]
    assert seen["bobSawEdit"] == edited
    assert seen["bobMention"] == {"message": edited}
    assert seen["aliceSawReaction"] == seen["reacted"]["message"]
    assert seen["aliceUpdates"] == [seen["reacted"]["message"]]
    assert seen["bobUpdates"] == [edited]

    assert seen["created"]["room"]["private"] is True
    assert seen["invited"]["ok"] is True and seen["invited"]["room"]["members"] == 2
    assert seen["bobJoined"]["room"]["name"] == seen["created"]["room"]["name"]
    assert seen["bobJoined"]["room"]["private"] is True
    assert seen["bobRoomUpdated"] == {"room": seen["topic"]["room"]}
    assert seen["topic"]["room"]["topic"] == "just us"
    assert seen["bobGotSecret"] == seen["secret"]


@pytest.mark.postgres
@pytest.mark.redis
def test_a_ban_on_one_worker_closes_the_admins_sockets_on_the_other(cluster, run_node):
    banner, victim = create_account(cluster.a, admin=True), create_account(cluster.a, admin=True)

    seen = run_node(
        "conversations.mjs",
        {
            "kind": "ban_across_workers",
            "a": cluster.a.url,
            "b": cluster.b.url,
            "banner": banner.token,
            "victim": victim.token,
            "victimName": victim.username,
        },
    )

    assert seen["adminConnected"] is True and seen["statsOk"] is True
    assert seen["banned"]["ok"] is True, seen["banned"]
    assert seen["kicked"] == [{"reason": "banned"}, {"reason": "banned"}]
    assert seen["ended"] == ["io server disconnect", "io server disconnect"]
