"""axe-core finds no serious or critical accessibility problem on any page.

Each page is checked at desktop width in the light and the dark theme and on a phone in the dark
one (the phone's layout with the light colours adds nothing the other three do not check), with
what opens on top of it: the message menu and the reaction picker, menus and dialogs, the phone
drawer, the dashboard's confirmation.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import ALL_MODES, chat_user, join_room, message, new_username, send, show_sidebar, sign_in
from tests.support.live_server import ROOT

pytestmark = pytest.mark.e2e

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


def serious_violations(page) -> list[dict]:
    if not page.evaluate("() => typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def check(page, where: str) -> None:
    problems = serious_violations(page)
    assert problems == [], f"{where}: {json.dumps(problems, indent=1)}"


AXE_MODES = ["desktop", "desktop-dark", "phone-dark"]


@pytest.fixture(params=AXE_MODES)
def axe_mode(request) -> str:
    return request.param


@pytest.fixture
def axe_context(shared_server, make_context, axe_mode):
    # The test injects axe as an inline script, which the pages' CSP rightly refuses.
    return make_context(shared_server.url, bypass_csp=True, **ALL_MODES[axe_mode])


def test_login_register_and_error_pages(axe_context, axe_mode):
    page = axe_context.new_page()
    for path in ("/login", "/register", "/no-such-page"):
        page.goto(path)
        check(page, f"{path} ({axe_mode})")
    page.goto("/register")
    page.get_by_label("Username").fill("Zoë")
    page.get_by_label(re.compile(r"^Password")).fill("short")
    page.get_by_label("Confirm password").fill("other")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_be_visible()
    check(page, f"/register with errors ({axe_mode})")


def test_chat_page_with_messages_menus_and_dialogs(axe_context, axe_mode, bots, artifacts_dir):
    page, ann = chat_user(axe_context, "ann")
    phone = axe_mode.startswith("phone")
    bob = bots()
    room = new_username("axe")
    bob.call("join", {"room": room})
    join_room(page, room)
    quoted = bob.say(room, f"hello @{ann}, see https://example.com and **this**", client_id=new_username("c"))
    bob.call("react", {"id": quoted["id"], "emoji": "🎉", "active": True})
    bob.say(room, "> a quote\n\n- a list\n- of two\n\n```\ncode block\n```", client_id=new_username("c"))
    send(page, "a reply of mine")
    bob.call("delete", {"id": bob.say(room, "soon gone", client_id=new_username("c"))["id"]})
    bob.dm(ann, "a direct word")
    expect(page.locator(f'#dm-list li[data-user="{bob.username}"] .unread')).to_have_text("1")
    expect(page.locator("#messages > li[data-id]")).to_have_count(4)
    expect(message(page, "a reply of mine")).to_have_attribute("data-status", "sent")
    check(page, "chat with messages")
    page.screenshot(path=str(artifacts_dir / f"axe-chat-{axe_mode}.png"))

    # A message's menu, then its reaction picker.
    item = message(page, "a reply of mine")
    item.hover()
    actions = item.get_by_role("group", name="Actions")
    actions.get_by_role("button", name="Edit", exact=True).focus()
    expect(actions).to_be_visible()
    check(page, "message menu open")
    actions.get_by_role("button", name="Add reaction").click()
    expect(page.get_by_role("dialog", name="Add a reaction")).to_be_visible()
    check(page, "reaction picker open")
    page.screenshot(path=str(artifacts_dir / f"axe-reaction-picker-{axe_mode}.png"))
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog", name="Add a reaction")).to_be_hidden()

    # The room menu, and dialogs on top of the page.
    page.get_by_label("Room options").click()
    expect(page.get_by_role("button", name="Edit topic")).to_be_visible()
    check(page, "room menu open")
    page.keyboard.press("Escape")
    item.hover()
    actions.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("dialog", name="Delete message?")).to_be_visible()
    check(page, "delete dialog open")
    page.screenshot(path=str(artifacts_dir / f"axe-delete-dialog-{axe_mode}.png"))
    page.keyboard.press("Escape")
    show_sidebar(page)
    page.get_by_role("button", name="Browse rooms").click()
    expect(page.get_by_role("dialog", name="Rooms")).to_be_visible()
    page.get_by_label("Find or create a room").fill(room[:4])
    expect(page.get_by_role("dialog", name="Rooms").get_by_role("button", name=re.compile(room))).to_be_visible()
    check(page, "room directory open")
    page.keyboard.press("Escape")

    # The DM list with its preview, and (on a phone) the open drawer.
    show_sidebar(page)
    expect(page.locator(f'#dm-list li[data-user="{bob.username}"] .preview')).to_have_text("a direct word")
    check(page, "sidebar with a DM preview" + (" (drawer open)" if phone else ""))
    page.locator("#dm-list").get_by_role("link", name=re.compile(bob.username)).click()
    expect(message(page, "a direct word")).to_be_visible()
    check(page, "DM conversation")


def test_admin_dashboard(shared_admin, axe_context, axe_mode, bots, artifacts_dir):
    admin_name = shared_admin
    mallory = bots()
    spam = mallory.say("general", f"spam from {mallory.username}")
    page = axe_context.new_page()
    sign_in(page, admin_name)
    page.goto("/admin")
    expect(page.locator("#admin-status")).to_have_text("Connected")
    expect(page.locator("#sockets-body")).to_contain_text(mallory.username)
    page.get_by_label("Message id").fill(str(spam["id"]))
    page.get_by_role("button", name="Delete message").click()
    expect(page.locator("#admin-feedback")).to_contain_text(f"Deleted message {spam['id']}")
    page.get_by_label("Search users").fill("nobody-at-all")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#users-empty")).to_be_visible()
    page.get_by_role("button", name=re.compile(rf"^Show {mallory.username} in Users \(socket ")).click()
    expect(page.locator("#users-body tr.shown")).to_have_count(1)
    page.get_by_label("Mute for (minutes)").fill("5")
    page.get_by_role("button", name=f"Mute {mallory.username}").click()
    expect(page.locator("#audit-body tr").first).to_contain_text("mute")
    check(page, f"admin dashboard ({axe_mode})")
    page.screenshot(path=str(artifacts_dir / f"admin-{axe_mode}.png"), full_page=True)
    page.get_by_role("button", name=f"Ban {mallory.username}").click()
    expect(page.get_by_role("dialog", name=f"Ban {mallory.username}?")).to_be_visible()
    check(page, f"admin ban confirmation ({axe_mode})")
    page.keyboard.press("Escape")
