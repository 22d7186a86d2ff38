"""Moderation rules: each action changes what it should, and lands in the audit log with it or not at all."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from app.errors import ServiceError
from app.extensions import db
from app.models import AuditEntry, Message, User, utcnow
from app.services import messages, moderation, users
from tests.support.moderation import let_mute_lapse


def audit_rows() -> list[AuditEntry]:
    db.session.rollback()  # a fresh snapshot: entries committed by the service since
    return list(db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)))


def fresh(user_id: int) -> User:
    db.session.rollback()
    return db.session.get(User, user_id)


@pytest.fixture
def admin(make_user):
    return make_user("boss", admin=True)


@pytest.fixture
def member(make_user):
    return make_user("alice")


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_ban_sets_the_ban_refuses_sign_in_and_is_logged(ctx, admin, member):
    summary = moderation.ban_user(admin.id, "ALICE", "  spam  ")

    assert summary["banned"] is True
    assert summary["ban_reason"] == "spam"
    assert fresh(member.id).banned
    with pytest.raises(ServiceError) as refused:
        users.authenticate("alice", member.password)
    assert refused.value.code == "banned"
    [entry] = audit_rows()
    assert (entry.admin_id, entry.action, entry.target, entry.details) == (admin.id, "ban", "alice", "spam")


def test_unban_restores_sign_in_and_is_logged(ctx, admin, member):
    moderation.ban_user(admin.id, "alice")
    summary = moderation.unban_user(admin.id, "alice")

    assert summary["banned"] is False and summary["ban_reason"] is None
    assert users.authenticate("alice", member.password).id == member.id
    assert [e.action for e in audit_rows()] == ["ban", "unban"]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_failing_audit_write_undoes_the_action(ctx, admin, member):
    def refuse(*_args):
        raise RuntimeError("audit log unavailable")

    event.listen(AuditEntry, "before_insert", refuse)
    try:
        with pytest.raises(RuntimeError):
            moderation.ban_user(admin.id, "alice", "spam")
    finally:
        event.remove(AuditEntry, "before_insert", refuse)

    assert not fresh(member.id).banned
    assert audit_rows() == []


@pytest.mark.parametrize(
    ("action", "arguments", "code"),
    [
        (moderation.ban_user, ("nobody",), "not_found"),
        (moderation.ban_user, (42,), "invalid"),
        (moderation.ban_user, (None,), "invalid"),
        (moderation.ban_user, ("a b",), "invalid"),
        (moderation.ban_user, ("alice", 5), "invalid"),
        (moderation.ban_user, ("alice", "x" * 501), "too_large"),
        (moderation.ban_user, ("boss",), "forbidden"),
        (moderation.unban_user, ("nobody",), "not_found"),
        (moderation.mute_user, ("alice", 0), "invalid"),
        (moderation.mute_user, ("alice", -5), "invalid"),
        (moderation.mute_user, ("alice", "60"), "invalid"),
        (moderation.mute_user, ("alice", 1.5), "invalid"),
        (moderation.mute_user, ("alice", True), "invalid"),
        (moderation.mute_user, ("nobody", 60), "not_found"),
        (moderation.mute_user, ("boss", 60), "forbidden"),
        (moderation.unmute_user, ([],), "invalid"),
        (moderation.delete_message, (0,), "invalid"),
        (moderation.delete_message, ("1",), "invalid"),
        (moderation.delete_message, (999_999,), "not_found"),
        (moderation.announce, ("   ",), "invalid"),
        (moderation.announce, (None,), "invalid"),
        (moderation.announce, ("x" * 4001,), "too_large"),
    ],
)
def test_refused_actions_change_nothing_and_log_nothing(ctx, admin, member, action, arguments, code):
    with pytest.raises(ServiceError) as refused:
        action(admin.id, *arguments)

    assert refused.value.code == code
    alice = fresh(member.id)
    assert not alice.banned and alice.muted_until is None
    assert audit_rows() == []


@pytest.mark.parametrize(
    "action",
    [
        lambda admin_id: moderation.ban_user(admin_id, "alice"),
        lambda admin_id: moderation.unban_user(admin_id, "alice"),
        lambda admin_id: moderation.mute_user(admin_id, "alice"),
        lambda admin_id: moderation.unmute_user(admin_id, "alice"),
        lambda admin_id: moderation.announce(admin_id, "hello"),
        lambda admin_id: moderation.kick(admin_id, "abc", "alice"),
    ],
)
def test_only_a_current_admin_can_act(ctx, make_user, member, action):
    other = make_user("carol")
    with pytest.raises(ServiceError) as refused:
        action(other.id)
    assert refused.value.code == "forbidden"

    demoted = make_user("former", admin=True)
    users.set_admin("former", False)
    with pytest.raises(ServiceError) as refused:
        action(demoted.id)
    assert refused.value.code == "forbidden"
    assert not fresh(member.id).banned
    assert audit_rows() == []


def test_mute_defaults_to_an_hour_and_is_logged(ctx, admin, member):
    before = utcnow()
    summary = moderation.mute_user(admin.id, "alice")
    after = utcnow()

    until = fresh(member.id).muted_until
    assert before + timedelta(seconds=3600) <= until <= after + timedelta(seconds=3600)
    assert summary["muted_until"] is not None
    [entry] = audit_rows()
    assert (entry.action, entry.target) == ("mute", "alice")
    assert entry.details.startswith("3600 seconds")


def test_long_mutes_are_clamped_to_thirty_days(ctx, admin, member):
    moderation.mute_user(admin.id, "alice", 10**9)

    until = fresh(member.id).muted_until
    assert until <= utcnow() + timedelta(days=30)
    assert until > utcnow() + timedelta(days=29)


def test_a_muted_user_cannot_post_until_the_mute_lapses_or_is_lifted(ctx, admin, member):
    moderation.mute_user(admin.id, "alice", 600)
    with pytest.raises(ServiceError) as refused:
        messages.post_room_message(fresh(member.id), "general", "hi")
    assert refused.value.code == "muted"

    # A lapsed mute needs nobody to lift it.
    let_mute_lapse("alice")
    assert messages.post_room_message(fresh(member.id), "general", "lapsed").message["body"] == "lapsed"
    assert moderation.search_users("alice")[0]["muted_until"] is None

    moderation.mute_user(admin.id, "alice", 600)
    moderation.unmute_user(admin.id, "alice")
    assert messages.post_room_message(fresh(member.id), "general", "lifted").message["body"] == "lifted"
    assert [e.action for e in audit_rows()] == ["mute", "mute", "unmute"]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_delete_message_soft_deletes_and_is_logged(ctx, admin, member):
    posted = messages.post_room_message(fresh(member.id), "general", "oops").message

    deleted = moderation.delete_message(admin.id, posted["id"])

    assert deleted["deleted"] is True and deleted["body"] == ""
    history, _ = messages.room_history("general")
    assert [(m["id"], m["deleted"], m["body"]) for m in history] == [(posted["id"], True, "")]
    assert db.session.get(Message, posted["id"]).body == "oops"  # kept for the record
    [entry] = audit_rows()
    assert (entry.action, entry.target, entry.details) == (
        "delete_message",
        str(posted["id"]),
        "room general from alice",
    )


def test_announce_returns_the_payload_and_logs_the_text(ctx, admin):
    announcement = moderation.announce(admin.id, "  maintenance at noon  ")

    assert announcement["body"] == "maintenance at noon"
    assert announcement["from"] == admin.to_dict()
    assert announcement["created_at"].endswith("Z")
    [entry] = audit_rows()
    assert (entry.action, entry.target, entry.details) == ("announce", "everyone", "maintenance at noon")


def test_audit_log_is_newest_first_and_limited(ctx, admin, member):
    moderation.mute_user(admin.id, "alice")
    moderation.unmute_user(admin.id, "alice")
    moderation.announce(admin.id, "hello")

    entries = moderation.audit_log()
    assert [e["action"] for e in entries] == ["announce", "unmute", "mute"]
    assert entries[0]["admin"] == admin.to_dict()
    assert set(entries[0]) >= {"id", "admin", "action", "target", "created_at"}
    assert [e["action"] for e in moderation.audit_log(2)] == ["announce", "unmute"]
    for bad in (0, -1, "5", True):
        with pytest.raises(ServiceError) as refused:
            moderation.audit_log(bad)
        assert refused.value.code == "invalid"


def test_search_users_finds_by_part_of_the_name(ctx, admin, member, make_user):
    make_user("alicia")
    make_user("bob")

    assert [u["username"] for u in moderation.search_users("ALI")] == ["alice", "alicia"]
    assert [u["username"] for u in moderation.search_users("")] == ["alice", "alicia", "bob", "boss"]
    assert moderation.search_users("%") == []
    found = moderation.search_users("boss")[0]
    assert found == {**admin.to_dict(), "banned": False, "ban_reason": None, "muted_until": None}
    for bad, code in ((5, "invalid"), ("x" * 33, "too_large")):
        with pytest.raises(ServiceError) as refused:
            moderation.search_users(bad)
        assert refused.value.code == code
