"""Two people chatting in real Chromium pages against a real server."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import (
    chat_user,
    composer,
    join_room,
    message,
    message_bodies,
    messages,
    new_username,
    open_room,
    send,
    show_sidebar,
    unread_badge,
)

pytestmark = pytest.mark.e2e


def test_room_exchange_both_ways(mode_context, mode, artifacts_dir):
    ann_page, ann = chat_user(mode_context(), "ann")
    bob_page, bob = chat_user(mode_context(), "bob")
    room = new_username("lobby")

    join_room(ann_page, room)
    join_room(bob_page, room)
    send(ann_page, "hello from ann")
    expect(message(ann_page, "hello from ann")).to_have_attribute("data-status", "sent")
    # Only messages still on their way (or refused) carry a delivery note.
    expect(message(ann_page, "hello from ann").locator(".delivery")).to_have_count(0)
    expect(message(bob_page, "hello from ann")).to_contain_text(ann)
    composer(bob_page).fill("hi ann,")
    composer(bob_page).press("Shift+Enter")
    composer(bob_page).press_sequentially("bob here")
    expect(composer(bob_page)).to_have_value("hi ann,\nbob here")
    composer(bob_page).press("Enter")

    expect(message(ann_page, "hi ann,\nbob here")).to_contain_text(bob)
    expect(composer(bob_page)).to_have_value("")
    for page in (ann_page, bob_page):
        expect(messages(page)).to_have_count(2)
        assert message_bodies(page) == ["hello from ann", "hi ann,\nbob here"]
    ann_page.screenshot(path=str(artifacts_dir / f"chat-page-{mode}.png"))


def test_composer_sends_to_general_when_nothing_else_is_open(shared_server, make_context):
    ann_page, _ann = chat_user(make_context(shared_server.url), "ann")
    bob_page, bob = chat_user(make_context(shared_server.url), "bob")
    body = f"to everyone {new_username('')}"

    expect(bob_page.locator("#conversation-title")).to_have_text("#general")
    send(bob_page, body)

    expect(message(ann_page, body)).to_contain_text(bob)
    expect(ann_page.locator("#conversation-title")).to_have_text("#general")


def test_direct_message_from_the_online_list(mode_context, mode, artifacts_dir):
    ann_page, ann = chat_user(mode_context(), "ann")
    bob_page, bob = chat_user(mode_context(), "bob")

    show_sidebar(ann_page)
    ann_page.locator("#online-list").get_by_role("button", name=bob).click()
    expect(ann_page.locator("#conversation-title")).to_have_text(f"@{bob}")
    expect(composer(ann_page)).to_be_visible()
    send(ann_page, "psst, just you")

    expect(bob_page.locator(f'#dm-list li[data-user="{ann}"] .unread')).to_have_text("1")
    show_sidebar(bob_page)
    bob_page.locator("#dm-list").get_by_role("link", name=re.compile(rf"^@{ann}")).click()
    expect(message(bob_page, "psst, just you")).to_contain_text(ann)
    expect(bob_page.locator(f'#dm-list li[data-user="{ann}"] .unread')).to_have_count(0)
    send(bob_page, "got it")
    expect(message(ann_page, "got it")).to_contain_text(bob)
    ann_page.screenshot(path=str(artifacts_dir / f"dm-conversation-{mode}.png"))
    # Nothing of the conversation leaked into general.
    ann_page.goto("/")
    expect(ann_page.locator("#conversation-title")).to_have_text("#general")
    expect(message(ann_page, "psst, just you")).to_have_count(0)


def test_typing_line(shared_server, make_context):
    ann_page, _ann = chat_user(make_context(shared_server.url), "ann")
    bob_page, bob = chat_user(make_context(shared_server.url), "bob")
    room = new_username("typing")
    join_room(ann_page, room)
    join_room(bob_page, room)

    composer(bob_page).fill("I am writing something long")

    expect(ann_page.locator("#typing")).to_have_text(f"{bob} is typing…")
    composer(bob_page).press("Enter")
    expect(message(ann_page, "I am writing something long")).to_be_visible()
    expect(ann_page.locator("#typing")).to_have_text("")


def test_scrolling_up_loads_all_older_history_once(shared_server, make_context, bots):
    room = new_username("history")
    seeders = [bots() for _ in range(7)]
    for seeder in seeders:
        seeder.call("join", {"room": room})
    # At most 19 messages per seeder keeps each under the 20-in-10-seconds limit.
    seeded = [f"seed {n:03d}" for n in range(130)]
    for n, body in enumerate(seeded):
        seeders[n // 19].say(room, body)
    page, _reader = chat_user(make_context(shared_server.url), "reader")
    scroller = page.locator("#message-scroller")

    join_room(page, room)
    expect(page.locator("#messages > li[data-id]")).to_have_count(50)
    assert message_bodies(page) == seeded[-50:]

    first = page.locator("#messages > li[data-id]").first
    first_id = first.get_attribute("data-id")
    # Scroll to the top and note where that message is, in one step, before older ones arrive.
    top_before = first.evaluate(
        "li => { document.getElementById('message-scroller').scrollTop = 0; return li.getBoundingClientRect().top; }"
    )
    expect(page.locator("#messages > li[data-id]")).to_have_count(100)
    # The message that was at the top stays where it was: no jump.
    kept = page.locator(f'#messages > li[data-id="{first_id}"]')
    top_after = kept.evaluate("li => li.getBoundingClientRect().top")
    assert abs(top_after - top_before) <= 2, (top_before, top_after)
    assert scroller.evaluate("el => el.scrollTop") > 0

    scroller.evaluate("el => { el.scrollTop = 0; }")
    expect(page.locator("#messages > li[data-id]")).to_have_count(130)
    expect(page.locator("#older-note")).to_have_text(f"This is the beginning of #{room}.")
    expect(page.get_by_role("button", name="Load older messages")).to_be_hidden()
    assert message_bodies(page) == seeded
    ids = [int(i) for i in page.locator("#messages > li[data-id]").evaluate_all("els => els.map(e => e.dataset.id)")]
    assert ids == sorted(set(ids))


def test_unread_counts_clear_on_open_and_survive_reload(shared_server, make_context):
    ann_page, _ann = chat_user(make_context(shared_server.url), "ann")
    bob_page, _bob = chat_user(make_context(shared_server.url), "bob")
    room = new_username("news")
    join_room(ann_page, room)
    join_room(bob_page, room)
    open_room(bob_page, "general")

    send(ann_page, "news one")
    send(ann_page, "news two")
    expect(message(ann_page, "news two")).to_have_attribute("data-status", "sent")

    expect(unread_badge(bob_page, room)).to_have_text("2")
    bob_page.reload()
    expect(unread_badge(bob_page, room)).to_have_text("2")
    expect(unread_badge(bob_page, "general")).to_have_count(0)

    open_room(bob_page, room)
    expect(message(bob_page, "news two")).to_be_visible()
    expect(unread_badge(bob_page, room)).to_have_count(0)
    expect(bob_page.locator(f'#room-list li[data-room="{room}"]')).to_have_attribute(
        "data-last-read", re.compile(r"\d+")
    )
    bob_page.goto("/")
    expect(bob_page.locator("#conversation-title")).to_have_text("#general")
    expect(bob_page.locator("#connection-status")).to_have_text("Connected")
    expect(unread_badge(bob_page, room)).to_have_count(0)

    send(ann_page, "news three")
    expect(unread_badge(bob_page, room)).to_have_text("1")


def test_markup_is_shown_as_text_and_never_runs(shared_server, make_context):
    ann_page, _ann = chat_user(make_context(shared_server.url), "ann")
    bob_page, _bob = chat_user(make_context(shared_server.url), "bob")
    dialogs = []
    for page in (ann_page, bob_page):
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    room = new_username("markup")
    join_room(ann_page, room)
    join_room(bob_page, room)
    attack = "<img src=x onerror=alert(1)>"
    script = "<script>alert(2)</script><b>bold?</b>"

    send(ann_page, attack)
    send(ann_page, script)

    for page in (ann_page, bob_page):
        expect(message(page, script)).to_have_attribute("data-status", "sent")
        expect(message(page, attack).locator(".body")).to_have_text(attack)
        expect(page.locator("#messages img, #messages script, #messages b")).to_have_count(0)
    bob_page.reload()
    open_room(bob_page, room)
    expect(message(bob_page, attack).locator(".body")).to_have_text(attack)
    expect(bob_page.locator("#messages img")).to_have_count(0)
    assert dialogs == []


def test_long_polling_only(shared_server, make_context):
    ann_page, ann = chat_user(make_context(shared_server.url), "ann", path="/?transport=polling")
    bob_page, bob = chat_user(make_context(shared_server.url), "bob", path="/?transport=polling")
    room = new_username("polling")
    join_room(ann_page, room)
    join_room(bob_page, room)

    send(ann_page, "over long-polling")
    expect(message(bob_page, "over long-polling")).to_contain_text(ann)
    send(bob_page, "polling back")
    expect(message(ann_page, "polling back")).to_contain_text(bob)

    for page in (ann_page, bob_page):
        assert page.evaluate("() => window.switchboard.socket.io.engine.transport.name") == "polling"
    # Without the parameter the same page upgrades to a websocket, so the check above can fail.
    ann_page.goto("/")
    ann_page.wait_for_function("() => window.switchboard.socket.io.engine?.transport?.name === 'websocket'")


def test_refused_message_shows_why_and_can_be_retried_or_edited(shared_server, shared_admin, make_context, bots):
    admin_name = shared_admin
    admin = bots(admin_name, namespace="/admin")
    page, ann = chat_user(make_context(shared_server.url), "ann")
    admin.call("mute", {"user": ann, "seconds": 600})

    send(page, "said while muted")

    refused = page.locator('#messages > li[data-status="failed"]')
    expect(refused.get_by_role("alert")).to_contain_text("Not sent: ")
    expect(refused.get_by_role("alert")).to_contain_text("muted")
    refused.get_by_role("button", name="Retry").click()
    expect(refused.get_by_role("alert")).to_contain_text("muted")
    expect(refused).to_have_count(1)
    refused.get_by_role("button", name="Edit").click()
    expect(refused).to_have_count(0)
    expect(composer(page)).to_have_value("said while muted")
    admin.call("unmute", {"user": ann})
    composer(page).fill("said once unmuted")
    composer(page).press("Enter")
    expect(message(page, "said once unmuted")).to_have_attribute("data-status", "sent")


def test_the_composer_counts_characters_near_the_limit_and_stops_at_it(mode_context):
    page, _ann = chat_user(mode_context(), "ann")
    join_room(page, new_username("long"))
    box = composer(page)
    counter = page.locator("#char-count")

    box.fill("x" * 3000)
    expect(counter).to_have_text("")
    box.fill("x" * 3990)
    expect(counter).to_have_text("3990 / 4000")
    box.press_sequentially("y" * 15)
    expect(counter).to_have_text("4000 / 4000")
    assert len(box.input_value()) == 4000
    box.press("Enter")
    expect(messages(page).filter(has_text="y" * 10)).to_have_attribute("data-status", "sent")
    expect(counter).to_have_text("")


def test_times_are_shown_in_the_readers_time_zone(mode_context):
    zone = "Asia/Kathmandu"  # UTC+5:45, so a wrong zone cannot show the same minutes
    page, _ann = chat_user(mode_context(timezone_id=zone, locale="en-GB"), "ann")
    asked = f"what time is it {new_username('')}"
    send(page, asked)

    stamp = message(page, asked).locator("time")
    expect(stamp).to_have_attribute("datetime", re.compile(r"Z$"))
    sent_at = datetime.fromisoformat(stamp.get_attribute("datetime").replace("Z", "+00:00")).astimezone(UTC)
    expect(stamp).to_have_text(sent_at.astimezone(ZoneInfo(zone)).strftime("%H:%M"))


def test_announcements_deletions_and_bans_reach_the_page(shared_server, shared_admin, make_context, bots):
    admin_name = shared_admin
    admin = bots(admin_name, namespace="/admin")
    page, ann = chat_user(make_context(shared_server.url), "ann")
    send(page, "soon to be gone")
    doomed = message(page, "soon to be gone")
    expect(doomed).to_have_attribute("data-status", "sent")
    send(page, "stays")

    admin.call("announce", {"body": "<b>Maintenance</b> at noon"})
    banner = page.locator("#announcement")
    expect(banner).to_contain_text(f"Announcement from {admin_name}")
    expect(banner.locator(".announcement-body")).to_have_text("<b>Maintenance</b> at noon")
    doomed_id = doomed.get_attribute("data-id")
    admin.call("delete_message", {"id": int(doomed_id)})
    expect(page.locator(f'#messages li[data-id="{doomed_id}"] .body')).to_have_text("This message was deleted.")
    expect(message(page, "stays")).to_be_visible()
    banner.get_by_role("button", name="Dismiss").click()
    expect(banner).to_be_hidden()

    admin.call("ban", {"user": ann, "reason": "spam"})
    expect(page.locator("#connection-status")).to_have_text("Disconnected: banned")
    assert page.evaluate("() => window.switchboard.socket.active") is False


def test_phone_width_keeps_the_conversation_usable(shared_server, make_context, artifacts_dir):
    context = make_context(shared_server.url, viewport={"width": 390, "height": 760}, is_mobile=True, has_touch=True)
    page, _ann = chat_user(context, "ann")
    room = new_username("phone")

    expect(page.locator("#sidebar")).to_be_hidden()
    expect(composer(page)).to_be_in_viewport()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    join_room(page, room)
    expect(page.locator("#sidebar")).to_be_hidden()
    send(page, "from a small screen")
    expect(message(page, "from a small screen")).to_have_attribute("data-status", "sent")
    page.screenshot(path=str(artifacts_dir / "chat-page-phone.png"))
    open_room(page, "general")
    expect(page.locator("#sidebar")).to_be_hidden()
