"""Edits, deletions, reactions, replies and mentions between real browsers, live and after a reconnect."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import (
    RECONNECT_TIMEOUT_MS,
    chat_user,
    composer,
    join_room,
    message,
    messages,
    new_username,
    send,
    show_sidebar,
    sign_in,
    wait_connected,
)

pytestmark = pytest.mark.e2e


def action(page, body: str, name: str):
    """A button of a message's hover menu (it shows on hover or keyboard focus)."""
    item = message(page, body)
    item.hover()
    return item.get_by_role("group", name="Actions").get_by_role("button", name=name, exact=True)


def test_edit_delete_react_and_reply_reach_the_other_browser(mode_context, mode, artifacts_dir):
    ann_page, ann = chat_user(mode_context(), "ann")
    bob_page, bob = chat_user(mode_context(), "bob")
    room = new_username("acts")
    join_room(ann_page, room)
    join_room(bob_page, room)
    send(ann_page, "first draft")
    expect(message(bob_page, "first draft")).to_be_visible()

    # Edit from the hover menu: Enter saves.
    action(ann_page, "first draft", "Edit").click()
    editor = ann_page.get_by_label("Edit message")
    expect(editor).to_be_focused()
    editor.fill("second draft")
    editor.press("Enter")
    for page in (ann_page, bob_page):
        expect(message(page, "second draft").locator(".edited")).to_have_text("(edited)")
    expect(composer(ann_page)).to_be_focused()

    # Up in the empty composer edits the last own message; Escape cancels.
    composer(ann_page).press("ArrowUp")
    expect(ann_page.get_by_label("Edit message")).to_have_value("second draft")
    ann_page.get_by_label("Edit message").press("Escape")
    expect(ann_page.get_by_label("Edit message")).to_have_count(0)
    expect(composer(ann_page)).to_be_focused()

    # Reactions: the picker, then toggling the reaction button.
    action(bob_page, "second draft", "Add reaction").click()
    bob_page.get_by_role("button", name="React with 👍").click()
    expect(message(bob_page, "second draft").get_by_role("button", name="👍 1")).to_have_attribute(
        "aria-pressed", "true"
    )
    thumbs = message(ann_page, "second draft").get_by_role("button", name="👍 1")
    expect(thumbs).to_have_attribute("aria-pressed", "false")
    thumbs.click()
    for page in (ann_page, bob_page):
        expect(message(page, "second draft").get_by_role("button", name="👍 2")).to_have_attribute(
            "aria-pressed", "true"
        )
    message(bob_page, "second draft").get_by_role("button", name="👍 2").click()
    expect(message(ann_page, "second draft").get_by_role("button", name="👍 1")).to_be_visible()

    # Reply: a quoted snippet above the composer, then on the message; the quote jumps to the original.
    action(bob_page, "second draft", "Reply").click()
    expect(bob_page.locator("#reply-preview")).to_contain_text("second draft")
    expect(composer(bob_page)).to_be_focused()
    send(bob_page, f"answering you @{ann}")
    expect(bob_page.locator("#reply-preview")).to_be_hidden()
    reply = message(ann_page, f"answering you @{ann}")
    expect(reply.locator(".reply-quote")).to_contain_text("second draft")
    expect(reply).to_have_class(re.compile(r"\bmentions-me\b"))
    expect(reply.locator(".mention-me")).to_have_text(f"@{ann}")
    reply.locator(".reply-quote").click()
    expect(message(ann_page, "second draft")).to_have_class(re.compile(r"\bhighlight\b"))
    ann_page.screenshot(path=str(artifacts_dir / f"message-actions-{mode}.png"))

    # Delete, after a confirmation.
    action(ann_page, "second draft", "Delete").click()
    dialog = ann_page.get_by_role("dialog", name="Delete message?")
    expect(dialog).to_contain_text("second draft")
    ann_page.screenshot(path=str(artifacts_dir / f"delete-dialog-{mode}.png"))
    dialog.get_by_role("button", name="Delete").click()
    expect(dialog).to_be_hidden()
    for page in (ann_page, bob_page):
        expect(page.locator("#messages .deleted .body")).to_have_text("This message was deleted.")
        expect(messages(page).filter(has_text="👍")).to_have_count(0)
    assert bob in message(ann_page, f"answering you @{ann}").inner_text()


def test_changes_made_while_a_tab_was_disconnected_show_after_it_reconnects(shared_server, make_context, bots):
    ann_context = make_context(shared_server.url)
    ann_page, ann = chat_user(ann_context, "ann")
    bob = bots()
    room = new_username("away")
    bob.call("join", {"room": room})
    join_room(ann_page, room)
    keep = bob.say(room, "keep me")
    doomed = bob.say(room, "remove me")
    expect(message(ann_page, "remove me")).to_be_visible()

    ann_context.route("**/socket.io/**", lambda route: route.abort())
    ann_page.evaluate("() => window.switchboard.socket.io.engine.close()")
    expect(ann_page.locator("#connection-status")).to_have_text("Reconnecting…", timeout=RECONNECT_TIMEOUT_MS)
    bob.call("edit", {"id": keep["id"], "body": "kept and edited"})
    bob.call("react", {"id": keep["id"], "emoji": "🎉", "active": True})
    bob.call("delete", {"id": doomed["id"]})
    bob.say(room, "said while you were away")
    bob.dm(ann, "a word in private")
    expect(message(ann_page, "keep me")).to_be_visible()

    ann_context.unroute("**/socket.io/**")
    wait_connected(ann_page, timeout=RECONNECT_TIMEOUT_MS)
    edited = message(ann_page, "kept and edited")
    expect(edited).to_be_visible()
    expect(edited.locator(".edited")).to_have_text("(edited)")
    expect(edited.get_by_role("button", name="🎉 1")).to_have_attribute("aria-pressed", "false")
    expect(ann_page.locator(f'#messages li[data-id="{doomed["id"]}"] .body')).to_have_text("This message was deleted.")
    expect(message(ann_page, "said while you were away")).to_have_count(1)
    expect(message(ann_page, "keep me")).to_have_count(0)
    # The DM that came meanwhile is counted once, whether it arrives with the session or by sync.
    expect(ann_page.locator(f'#dm-list li[data-user="{bob.username}"] .unread')).to_have_text("1")
    assert ann not in (edited.inner_text())


def test_markdown_renders_safely_and_javascript_links_are_never_links(mode_context, bots):
    page, _ann = chat_user(mode_context(), "ann")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    bob = bots()
    body = f"**bold** _soft_ `code` [click](javascript:alert(1)) see https://example.com/x {bob.username}"
    bob.say("general", body, client_id=new_username("md"))

    item = messages(page).filter(has_text=bob.username)
    expect(item.locator(".body strong")).to_have_text("bold")
    expect(item.locator(".body em")).to_have_text("soft")
    expect(item.locator(".body code")).to_have_text("code")
    expect(item.locator(".body")).to_contain_text("[click](javascript:alert(1))")
    expect(item.locator("a")).to_have_count(1)
    link = item.get_by_role("link", name="https://example.com/x")
    expect(link).to_have_attribute("href", "https://example.com/x")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    assert page.locator('#messages a[href^="javascript"], #messages a[href^="JAVASCRIPT"]').count() == 0
    item.locator(".body").get_by_text("javascript:alert(1)").click()
    assert dialogs == []


def test_private_rooms_invitations_and_topics(shared_server, make_context, artifacts_dir):
    ann_page, _ann = chat_user(make_context(shared_server.url), "ann")
    bob_page, bob = chat_user(make_context(shared_server.url), "bob")
    room = new_username("secret")

    join_room(ann_page, room, private=True)
    link = ann_page.locator("#room-list").get_by_role("link", name=re.compile(rf"#{room}"))
    expect(link.locator(".lock")).to_be_visible()
    expect(link).to_have_accessible_name(re.compile(r"\(private\)"))

    show_sidebar(bob_page)
    bob_page.get_by_role("button", name="Browse rooms").click()
    directory = bob_page.get_by_role("dialog", name="Rooms")
    directory.get_by_label("Find or create a room").fill(room)
    expect(directory.get_by_role("button", name=f"Create #{room}")).to_be_visible()
    expect(directory.get_by_role("button", name=f"Join #{room}")).to_have_count(0)
    bob_page.keyboard.press("Escape")
    expect(directory).to_be_hidden()

    ann_page.get_by_label("Room options").click()
    ann_page.get_by_role("button", name="Invite people").click()
    invite = ann_page.get_by_role("dialog", name=re.compile("Invite people"))
    invite.get_by_label("Username to invite").fill(bob)
    invite.get_by_role("button", name="Invite", exact=True).click()
    expect(invite.get_by_role("status")).to_contain_text(f"{bob} is now a member")
    invite.get_by_role("button", name="Close").click()

    bob_link = bob_page.locator("#room-list").get_by_role("link", name=re.compile(rf"#{room}"))
    expect(bob_link).to_be_visible()

    ann_page.get_by_label("Room options").click()
    ann_page.get_by_role("button", name="Edit topic").click()
    topic = ann_page.get_by_role("dialog", name="Edit topic")
    topic.get_by_label("Topic").fill("Plans for the launch")
    topic.get_by_role("button", name="Save topic").click()
    expect(ann_page.locator("#conversation-topic")).to_have_text("Plans for the launch")

    show_sidebar(bob_page)
    bob_link.click()
    expect(bob_page.locator("#conversation-topic")).to_have_text("Plans for the launch")
    expect(composer(bob_page)).to_be_focused()
    ann_page.get_by_label("Room options").click()
    ann_page.get_by_role("button", name="Edit topic").click()
    topic.get_by_label("Topic").fill("Launch moved to Friday")
    topic.get_by_role("button", name="Save topic").click()
    expect(bob_page.locator("#conversation-topic")).to_have_text("Launch moved to Friday")
    bob_page.screenshot(path=str(artifacts_dir / "private-room.png"))


def test_an_admin_deletes_anyones_message_from_the_chat_page(shared_admin, mode_context, bots):
    admin_name = shared_admin
    page = mode_context().new_page()
    sign_in(page, admin_name)
    wait_connected(page)
    spammer = bots()
    spam = f"buy cheap things from {spammer.username}"
    spam_id = spammer.say("general", spam)["id"]

    expect(message(page, spam)).to_be_visible()
    action(page, spam, "Delete").click()
    dialog = page.get_by_role("dialog", name="Delete message?")
    expect(dialog).to_contain_text("as an admin")
    dialog.get_by_role("button", name="Delete").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(f'#messages li[data-id="{spam_id}"] .body')).to_have_text("This message was deleted.")
    history = spammer.call("history", {"room": "general", "limit": 5})["messages"]
    assert [m["deleted"] for m in history if m["sender"]["username"] == spammer.username] == [True]


def test_opening_a_message_further_back_than_the_first_page_loads_it_and_highlights_it(
    shared_server, make_context, bots
):
    page, _ann = chat_user(make_context(shared_server.url), "ann")
    room = new_username("deep")
    senders = [bots() for _ in range(4)]
    for sender in senders:
        sender.call("join", {"room": room})
    posted = [senders[n // 15].say(room, f"deep {n:02d}", client_id=new_username("c")) for n in range(60)]
    join_room(page, room)
    expect(page.locator("#messages > li[data-id]")).to_have_count(50)
    expect(message(page, "deep 03")).to_have_count(0)

    # What a search result does: open the conversation at one message.
    page.evaluate(f"() => window.switchboard.open('room', '{room}', {posted[3]['id']})")
    target = message(page, "deep 03")
    expect(target).to_have_class(re.compile(r"\bhighlight\b"))
    expect(target).to_be_in_viewport()


def test_mentions_elsewhere_are_badged_live_and_after_a_reload(shared_server, make_context, bots):
    page, ann = chat_user(make_context(shared_server.url), "ann")
    bob = bots()
    room = new_username("ping")
    bob.call("join", {"room": room})
    join_room(page, room)
    show_sidebar(page)
    page.locator("#room-list").get_by_role("link", name=re.compile(r"^#general")).click()

    bob.say(room, f"@{ann} can you look?", client_id=new_username("c"))
    bob.say(room, "no mention here", client_id=new_username("c"))
    entry = page.locator(f'#room-list li[data-room="{room}"]')
    expect(entry.locator(".mention-badge")).to_have_text("@1")
    expect(entry.locator(".unread")).to_have_text("2")
    expect(entry.get_by_role("link")).to_have_accessible_name(re.compile(r"1 mention"))
    page.reload()
    wait_connected(page)
    expect(entry.locator(".mention-badge")).to_have_text("@1")

    entry.get_by_role("link").click()
    expect(message(page, f"@{ann} can you look?")).to_have_class(re.compile(r"\bmentions-me\b"))
    expect(entry.locator(".mention-badge")).to_have_count(0)
    expect(entry).to_have_attribute("data-last-read", re.compile(r"\d+"))
    # Read on the server: reopened elsewhere, the room has neither mention nor unread badge.
    page.goto("/")
    wait_connected(page)
    expect(page.locator("#conversation-title")).to_have_text("#general")
    expect(entry.get_by_role("link")).to_be_visible()
    expect(entry.locator(".mention-badge")).to_have_count(0)
    expect(entry.locator(".unread")).to_have_count(0)
