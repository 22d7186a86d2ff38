"""Finding and opening conversations: the sidebar, DMs from the server, rooms that do not exist."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.pages import (
    ALL_MODES,
    chat_user,
    composer,
    join_room,
    message,
    new_username,
    send,
    show_sidebar,
    sign_in,
    wait_connected,
)

pytestmark = pytest.mark.e2e


def api_rooms(base_url: str, token: str) -> set[str]:
    response = requests.get(f"{base_url}/api/rooms", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    response.raise_for_status()
    return {room["name"] for room in response.json()["rooms"]}


def conversation_link(page, name_pattern: str):
    return page.locator("#sidebar").get_by_role("link", name=re.compile(name_pattern))


def test_every_conversation_is_a_named_link_and_opening_one_focuses_the_composer(
    mode_context, mode, bots, artifacts_dir
):
    phone = mode.startswith("phone")
    page, ann = chat_user(mode_context(), "ann")
    room = new_username("focus")
    bob = bots()
    bob.dm(ann, "hello ann")
    join_room(page, room)
    expect(composer(page)).to_be_focused()

    for name, title in [("general", "#general"), (bob.username, f"@{bob.username}"), (room, f"#{room}")]:
        show_sidebar(page)
        link = conversation_link(page, re.escape(name if name == bob.username else f"#{name}"))
        expect(link).to_have_count(1)
        link.click()
        expect(page.locator("#conversation-title")).to_have_text(title)
        expect(composer(page)).to_be_focused()
        if phone:
            expect(page.locator("#sidebar")).to_be_hidden()

    # By keyboard: Enter on a link in the sidebar.
    show_sidebar(page)
    conversation_link(page, r"#general").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#conversation-title")).to_have_text("#general")
    expect(composer(page)).to_be_focused()
    # By address.
    page.evaluate(f"() => {{ location.hash = '#/room/{room}'; }}")
    expect(page.locator("#conversation-title")).to_have_text(f"#{room}")
    expect(composer(page)).to_be_focused()
    # Alt+Down moves to the next conversation of the sidebar: rooms by name, then DMs.
    page.keyboard.press("Alt+ArrowDown")
    expect(page.locator("#conversation-title")).to_have_text("#general")
    page.keyboard.press("Alt+ArrowDown")
    expect(page.locator("#conversation-title")).to_have_text(f"@{bob.username}")
    expect(composer(page)).to_be_focused()
    page.keyboard.press("Alt+ArrowUp")
    expect(page.locator("#conversation-title")).to_have_text("#general")
    page.keyboard.press("Alt+ArrowDown")
    expect(composer(page)).to_be_focused()
    send(page, "back at you")
    expect(message(page, "back at you")).to_have_attribute("data-status", "sent")
    page.screenshot(path=str(artifacts_dir / f"conversations-{mode}.png"))


@pytest.mark.parametrize("phone", ["phone", "phone-dark"])
def test_the_phone_drawer_closes_with_escape_a_tap_outside_and_its_close_button(
    shared_server, make_context, artifacts_dir, phone
):
    page, _ann = chat_user(make_context(shared_server.url, **ALL_MODES[phone]), "ann")
    toggle = page.get_by_role("button", name="Conversations")
    sidebar = page.locator("#sidebar")

    toggle.click()
    expect(sidebar).to_be_visible()
    expect(page.locator("#sidebar-backdrop")).to_be_visible()
    page.screenshot(path=str(artifacts_dir / f"drawer-{phone}.png"))
    page.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    expect(composer(page)).to_be_focused()

    toggle.click()
    page.mouse.click(370, 400)  # on the dimmed page, right of the drawer
    expect(sidebar).to_be_hidden()

    toggle.click()
    page.get_by_role("button", name="Close conversations").click()
    expect(sidebar).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    header = page.locator(".conversation-header").bounding_box()
    assert header["height"] < 60, header


def test_a_dm_sent_while_offline_is_listed_and_badged_on_sign_in_in_a_fresh_browser(mode_context, bots):
    ann = bots()
    ann.close()  # ann is offline from here on; she has never opened the chat page
    bob = bots()
    carol = bots()
    bob.dm(ann.username, "while you were away")
    bob.dm(ann.username, "two of them")

    page = mode_context().new_page()
    sign_in(page, ann.username)
    wait_connected(page)
    show_sidebar(page)

    entry = page.locator(f'#dm-list li[data-user="{bob.username}"]')
    expect(entry.get_by_role("link", name=re.compile(re.escape(bob.username)))).to_be_visible()
    expect(entry.locator(".unread")).to_have_text("2")
    expect(page).to_have_title(re.compile(r"^\(2\) "))
    expect(page.locator("#favicon")).to_have_attribute("href", re.compile("favicon-unread"))

    # A live DM from someone new adds an entry at the top, badged.
    carol.dm(ann.username, "me too")
    first = page.locator("#dm-list li").first
    expect(first).to_have_attribute("data-user", carol.username)
    expect(first.locator(".unread")).to_have_text("1")

    entry.get_by_role("link").click()
    expect(message(page, "two of them")).to_be_visible()
    expect(page.locator(".new-divider")).to_have_text("New messages")
    expect(entry.locator(".unread")).to_have_count(0)
    expect(composer(page)).to_be_focused()
    expect(entry).to_have_attribute("data-last-read", re.compile(r"\d+"))
    send(page, "back now")
    expect(message(page, "back now")).to_have_attribute("data-status", "sent")
    # The read marker is stored: after a reload only carol's conversation is unread.
    page.goto("/")
    wait_connected(page)
    show_sidebar(page)
    expect(entry.get_by_role("link")).to_be_visible()
    expect(entry.locator(".unread")).to_have_count(0)
    expect(page.locator(f'#dm-list li[data-user="{carol.username}"] .unread')).to_have_text("1")
    expect(page.locator("#dm-list li").first).to_have_attribute("data-user", bob.username)


def test_a_new_message_can_go_to_someone_who_is_not_online(shared_server, make_context, bots):
    page, ann = chat_user(make_context(shared_server.url), "ann")
    dan = bots()
    dan.close()

    show_sidebar(page)
    page.get_by_role("button", name="New message").click()
    dialog = page.get_by_role("dialog", name="New message")
    dialog.get_by_label("To (username)").fill("nobody-" + new_username("")[:6])
    dialog.get_by_role("button", name="Open conversation").click()
    expect(dialog.get_by_role("alert")).to_contain_text("There is no user named")
    dialog.get_by_label("To (username)").fill(dan.username)
    dialog.get_by_role("button", name="Open conversation").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#conversation-title")).to_have_text(f"@{dan.username}")
    expect(composer(page)).to_be_focused()
    send(page, "for when you are back")
    expect(message(page, "for when you are back")).to_have_attribute("data-status", "sent")

    dan_again = bots(dan.username)
    history = dan_again.call("dm_history", {"user": ann})["messages"]
    assert [m["body"] for m in history] == ["for when you are back"]


def test_an_address_naming_a_missing_room_offers_to_create_it_and_never_creates_it_alone(
    shared_server, make_context, bots, artifacts_dir
):
    page, ann = chat_user(make_context(shared_server.url), "ann")
    watcher = bots()
    typo = new_username("typo")

    page.goto(f"/#/room/{typo}")
    create = page.get_by_role("button", name=f"Create #{typo}")
    expect(create).to_be_visible()
    expect(create).to_be_focused()
    expect(composer(page)).to_be_disabled()
    page.screenshot(path=str(artifacts_dir / "missing-room.png"))
    page.reload()
    expect(create).to_be_visible()
    assert typo not in api_rooms(shared_server.url, watcher.token)
    expect(page.locator("#room-list").get_by_role("link", name=re.compile(typo))).to_have_count(0)

    create.click()
    expect(create).to_be_hidden()
    expect(composer(page)).to_be_enabled()
    expect(composer(page)).to_be_focused()
    assert typo in api_rooms(shared_server.url, watcher.token)
    expect(page.locator("#room-list").get_by_role("link", name=re.compile(f"#{typo}"))).to_be_visible()
    send(page, "first words")
    expect(message(page, "first words")).to_have_attribute("data-status", "sent")


def test_the_room_directory_finds_and_joins_existing_rooms(shared_server, make_context, bots):
    page, _ann = chat_user(make_context(shared_server.url), "ann")
    owner = bots()
    room = new_username("dir")
    owner.call("join", {"room": room})
    owner.say(room, "already here")

    show_sidebar(page)
    page.get_by_role("button", name="Browse rooms").click()
    dialog = page.get_by_role("dialog", name="Rooms")
    expect(dialog.get_by_label("Find or create a room")).to_be_focused()
    dialog.get_by_label("Find or create a room").fill(room[:-2])
    expect(dialog.get_by_role("button", name=f"Create #{room[:-2]}")).to_be_visible()
    dialog.get_by_label("Find or create a room").fill(room)
    dialog.get_by_role("button", name=f"Join #{room}").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#conversation-title")).to_have_text(f"#{room}")
    expect(message(page, "already here")).to_be_visible()
    expect(composer(page)).to_be_focused()
    assert room[:-2] not in api_rooms(shared_server.url, owner.token)


def test_the_dm_list_previews_each_conversations_last_message_as_plain_text(mode_context, mode, bots, artifacts_dir):
    page, ann = chat_user(mode_context(), "ann")
    bob = bots()
    entry = page.locator(f'#dm-list li[data-user="{bob.username}"]')
    link = entry.get_by_role("link")
    preview = entry.locator(".preview")

    bob.dm(ann, "first")
    long_body = "<b>not bold</b> **nor this**\n\nsee #general and @" + ann + " " + "then more words " * 10
    bob.dm(ann, long_body, client_id=new_username("c"))
    expect(preview).to_have_text(re.compile(r"^<b>not bold</b> \*\*nor this\*\* see #general .*…$"))
    assert len(preview.text_content()) <= 60
    expect(page.locator("#dm-list b, #dm-list strong")).to_have_count(0)
    # The preview describes the link; its name is still the person's, and no other link takes
    # the name of a room or person the preview quotes.
    show_sidebar(page)
    expect(link).to_have_accessible_name(re.compile(rf"^@{re.escape(bob.username)}\b"))
    expect(link).not_to_have_accessible_name(re.compile("general|not bold"))
    expect(link).to_have_accessible_description(preview.text_content())
    expect(conversation_link(page, r"#general")).to_have_count(1)
    expect(conversation_link(page, re.escape(ann))).to_have_count(0)

    link.click()
    expect(message(page, "first")).to_be_visible()
    send(page, "on my way")
    expect(preview).to_have_text("You: on my way")
    last = bob.dm(ann, "one more thing")
    expect(preview).to_have_text("one more thing")
    bob.call("delete", {"id": last["id"]})
    expect(preview).to_have_text("message deleted")

    # Live while another conversation is open, and from the session after a reload.
    show_sidebar(page)
    conversation_link(page, r"#general").click()
    bob.dm(ann, "ping   with\nspaces", client_id=new_username("c"))
    expect(preview).to_have_text("ping with spaces")
    expect(entry.locator(".unread")).to_have_text("1")
    page.reload()
    wait_connected(page)
    expect(preview).to_have_text("ping with spaces")
    show_sidebar(page)
    page.screenshot(path=str(artifacts_dir / f"dm-list-{mode}.png"))
