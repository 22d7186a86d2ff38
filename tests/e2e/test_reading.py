"""Reading and writing comfortably: drafts, the unread line and pill, rate limits, shortcuts, kicks."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import (
    ALL_MODES,
    MODES,
    RECONNECT_TIMEOUT_MS,
    chat_user,
    composer,
    join_room,
    message,
    message_bodies,
    new_username,
    open_room,
    send,
    wait_connected,
)

pytestmark = pytest.mark.e2e


def test_each_conversation_keeps_its_own_draft_across_switches_and_reloads(mode_context):
    page, _ann = chat_user(mode_context(), "ann")
    room = new_username("drafts")
    join_room(page, room)

    composer(page).fill("half a thought")
    open_room(page, "general")
    expect(composer(page)).to_have_value("")
    composer(page).fill("for general")
    open_room(page, room)
    expect(composer(page)).to_have_value("half a thought")
    page.reload()
    wait_connected(page)
    expect(page.locator("#conversation-title")).to_have_text(f"#{room}")
    expect(composer(page)).to_have_value("half a thought")
    composer(page).press("Enter")
    expect(message(page, "half a thought")).to_have_attribute("data-status", "sent")
    page.reload()
    expect(composer(page)).to_have_value("")
    open_room(page, "general")
    expect(composer(page)).to_have_value("for general")


def test_unread_line_and_new_messages_pill(mode_context, mode, bots, artifacts_dir):
    page, _ann = chat_user(mode_context(), "ann")
    bob, carol = bots(), bots()
    room = new_username("busy")
    bob.call("join", {"room": room})
    carol.call("join", {"room": room})
    join_room(page, room)
    for n in range(18):  # under the limit of 20 in 10 seconds per sender
        bob.say(room, f"early {n:02d}", client_id=new_username("c"))
    expect(message(page, "early 17")).to_be_visible()
    open_room(page, "general")
    later = [f"later {n} " + "more words " * 12 for n in range(12)]  # more than a screenful
    for body in later:
        carol.say(room, body.strip(), client_id=new_username("c"))
    expect(page.locator(f'#room-list li[data-room="{room}"] .unread')).to_have_text("12")
    expect(page).to_have_title(re.compile(r"^\(12\) #general · Switchboard$"))

    open_room(page, room)
    divider = message(page, later[0].strip()).locator(".new-divider")
    expect(divider).to_have_text("New messages")
    expect(divider).to_be_in_viewport()
    expect(page.locator(".new-divider")).to_have_count(1)
    expect(page).to_have_title(f"#{room} · Switchboard")

    # Read on to the end: a control leads back to where the unread messages began.
    jump = page.get_by_role("button", name="Jump to first unread")
    expect(jump).to_be_hidden()
    page.locator("#message-scroller").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(jump).to_be_visible()
    jump.click()
    expect(divider).to_be_in_viewport()
    expect(jump).to_be_hidden()
    expect(composer(page)).to_be_focused()

    page.locator("#message-scroller").evaluate("el => { el.scrollTop = 0; }")
    carol.say(room, "while you scroll", client_id=new_username("c"))
    pill = page.get_by_role("button", name=re.compile("New messages below"))
    expect(pill).to_be_visible()
    page.screenshot(path=str(artifacts_dir / f"new-messages-pill-{mode}.png"))
    pill.click()
    expect(message(page, "while you scroll")).to_be_in_viewport()
    expect(pill).to_be_hidden()


def test_messages_over_the_rate_limit_wait_with_a_countdown_and_go_out_in_order(mode_context):
    page, _ann = chat_user(mode_context(), "ann")
    room = new_username("fast")
    join_room(page, room)
    bodies = [f"quick {n:02d}" for n in range(23)]

    for body in bodies:
        send(page, body)

    waiting = page.locator('#messages > li[data-status="waiting"]')
    expect(waiting.first).to_be_visible(timeout=10_000)
    expect(waiting.first.locator(".delivery")).to_contain_text(re.compile(r"waiting \d+ s"))
    expect(page.locator('#messages > li[data-status="failed"]')).to_have_count(0)
    expect(page.locator("#messages > li[data-id]")).to_have_count(len(bodies), timeout=RECONNECT_TIMEOUT_MS)
    assert message_bodies(page) == bodies


def test_quick_switcher_skip_link_and_the_theme(mode_context, mode):
    page, _ann = chat_user(mode_context(), "ann")
    room = new_username("jump")
    join_room(page, room)
    open_room(page, "general")

    page.keyboard.press("Control+k")
    switcher = page.get_by_role("dialog", name="Jump to a conversation")
    expect(switcher.get_by_label("Room or person")).to_be_focused()
    switcher.get_by_label("Room or person").fill(room[:6])
    page.keyboard.press("Enter")
    expect(page.locator("#conversation-title")).to_have_text(f"#{room}")
    expect(composer(page)).to_be_focused()

    # The skip link is the first stop of the keyboard and shows when focused.
    response = page.goto("/no-such-page")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.goto("/")
    wait_connected(page)
    skip = page.get_by_role("link", name="Skip to the message box")
    skip.focus()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(composer(page)).to_be_focused()

    # The theme follows the system until the toggle picks the other one, which then stays.
    system_dark = MODES[mode]["color_scheme"] == "dark"
    dark = page.get_by_role("button", name="Dark mode")
    expect(dark).to_have_attribute("aria-pressed", str(system_dark).lower())
    assert background(page) == (DARK_BACKGROUND if system_dark else LIGHT_BACKGROUND)
    dark.click()
    expect(dark).to_have_attribute("aria-pressed", str(not system_dark).lower())
    expect(page.locator("html")).to_have_attribute("data-theme", "light" if system_dark else "dark")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "light" if system_dark else "dark")
    expect(dark).to_have_attribute("aria-pressed", str(not system_dark).lower())
    assert background(page) == (LIGHT_BACKGROUND if system_dark else DARK_BACKGROUND)


DARK_BACKGROUND = "rgb(26, 29, 33)"
LIGHT_BACKGROUND = "rgb(255, 255, 255)"


def background(page) -> str:
    return page.evaluate("() => getComputedStyle(document.body).backgroundColor")


def test_a_kicked_user_sees_why_can_reconnect_and_a_banned_one_sees_the_ban(
    shared_admin, mode_context, mode, bots, artifacts_dir
):
    admin_name = shared_admin
    admin = bots(admin_name, namespace="/admin")
    page, ann = chat_user(mode_context(), "ann")
    sid = page.evaluate("() => window.switchboard.socket.id")

    admin.call("kick", {"sid": sid})
    screen = page.locator("#kicked-screen")
    expect(screen).to_be_visible()
    expect(screen).to_contain_text("You were removed from the chat")
    expect(composer(page)).to_be_disabled()
    page.screenshot(path=str(artifacts_dir / f"kicked-{mode}.png"))
    screen.get_by_role("button", name="Reconnect").click()
    wait_connected(page, timeout=RECONNECT_TIMEOUT_MS)
    expect(screen).to_be_hidden()
    expect(composer(page)).to_be_enabled()
    back = f"back after a kick {new_username('')}"
    send(page, back)
    expect(message(page, back)).to_have_attribute("data-status", "sent")

    admin.call("ban", {"user": ann, "reason": "spam"})
    expect(screen).to_contain_text("Your account has been banned")
    expect(screen.get_by_role("button", name="Reconnect")).to_be_hidden()
    expect(composer(page)).to_be_disabled()


@pytest.mark.parametrize("phone", ["phone", "phone-dark"])
def test_the_newest_message_stays_in_view_when_the_window_shrinks(
    shared_server, make_context, bots, artifacts_dir, phone
):
    page, _ann = chat_user(make_context(shared_server.url, **ALL_MODES[phone]), "ann")
    bob = bots()
    room = new_username("shrink")
    bob.call("join", {"room": room})
    join_room(page, room)
    for n in range(15):
        bob.say(room, f"line {n:02d} " + "words " * 12, client_id=new_username("c"))
    newest = page.locator("#messages > li[data-id]").last
    expect(newest).to_contain_text("line 14")
    expect(newest).to_be_in_viewport()

    page.set_viewport_size({"width": 390, "height": 480})  # as when the on-screen keyboard opens
    expect(newest).to_be_in_viewport()
    header = page.locator(".conversation-header").bounding_box()
    assert header["height"] < 60, header
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(artifacts_dir / f"chat-page-{phone}-short.png"))


# Headless Chromium never hides a tab and shows no notifications: the page's own code runs as is,
# against a recording stand-in for the browser's Notification API and a visibility switch.
FAKE_NOTIFICATIONS = """
window.shown = [];
window.permissionAsked = 0;
window.tabHidden = false;
let permission = sessionStorage.getItem("permission") || "default"; // the browser remembers a grant
window.Notification = class {
  constructor(title, options = {}) { window.shown.push({ title, body: options.body }); }
  close() {}
  static get permission() { return permission; }
  static async requestPermission() { window.permissionAsked += 1; permission = "granted";
    sessionStorage.setItem("permission", permission); return permission; }
};
Object.defineProperty(Document.prototype, "visibilityState", {
  get() { return window.tabHidden ? "hidden" : "visible"; },
});
"""


def test_notifications_are_asked_for_on_a_click_and_shown_for_dms_and_mentions_while_hidden(
    mode_context, mode, bots, artifacts_dir
):
    context = mode_context()
    context.add_init_script(FAKE_NOTIFICATIONS)
    page, ann = chat_user(context, "ann")
    bob = bots()
    room = new_username("notify")
    bob.call("join", {"room": room})
    join_room(page, room)
    enable = page.get_by_role("button", name="Enable notifications")
    expect(enable).to_be_visible()
    assert page.evaluate("() => window.permissionAsked") == 0

    # Nothing while the tab is visible, nor before they are enabled.
    page.evaluate("() => { window.tabHidden = true; }")
    bob.dm(ann, "before enabling", client_id=new_username("c"))
    expect(page.locator(f'#dm-list li[data-user="{bob.username}"] .unread')).to_have_text("1")
    enable.click()
    assert page.evaluate("() => window.permissionAsked") == 1
    expect(page.get_by_role("status").filter(has_text="Notifications are on")).to_be_visible()
    page.screenshot(path=str(artifacts_dir / f"notifications-{mode}.png"))

    bob.dm(ann, "a **private** word", client_id=new_username("c"))
    bob.say(room, f"@{ann} look here", client_id=new_username("c"))
    bob.say(room, "no mention", client_id=new_username("c"))
    page.wait_for_function("() => window.shown.length >= 2")
    assert page.evaluate("() => window.shown") == [
        {"title": bob.username, "body": "a **private** word"},
        {"title": f"{bob.username} in #{room}", "body": f"@{ann} look here"},
    ]
    page.evaluate("() => { window.tabHidden = false; }")
    bob.dm(ann, "while looking", client_id=new_username("c"))
    expect(page.locator(f'#dm-list li[data-user="{bob.username}"] .unread')).to_have_text("3")

    # The setting is the user's and outlives a reload; turned off, nothing more is shown.
    page.reload()
    wait_connected(page)
    turn_off = page.get_by_role("button", name="Turn off notifications")
    turn_off.click()
    expect(page.get_by_role("button", name="Enable notifications")).to_be_visible()
    page.evaluate("() => { window.tabHidden = true; }")
    bob.dm(ann, "after turning off", client_id=new_username("c"))
    expect(page.locator(f'#dm-list li[data-user="{bob.username}"] .unread')).to_have_text("4")
    assert page.evaluate("() => window.shown") == []


def test_messages_group_by_author_under_day_separators(mode_context, mode, bots, artifacts_dir):
    page, _ann = chat_user(mode_context(), "ann")
    bob, carol = bots(), bots()
    room = new_username("days")
    for bot in (bob, carol):
        bot.call("join", {"room": room})
    join_room(page, room)
    for body, bot in [("b1", bob), ("b2", bob), ("b3", bob), ("c1", carol), ("b4", bob)]:
        bot.say(room, body, client_id=new_username("c"))
    items = page.locator("#messages > li[data-id]")
    expect(items).to_have_count(5)

    # One name for a run of messages from one author; a new run when someone else speaks.
    grouped = items.evaluate_all("els => els.map(e => e.classList.contains('grouped'))")
    assert grouped == [False, True, True, False, False], grouped
    # Within a run the name is there for screen readers only.
    assert message(page, "b2").locator(".sender").bounding_box()["width"] <= 1
    expect(message(page, "c1").locator(".sender")).to_have_text(carol.username)
    expect(page.locator("#messages .day-divider")).to_have_text(["Today"])
    expect(message(page, "b1").locator(".day-divider")).to_have_accessible_name("Today")
    page.screenshot(path=str(artifacts_dir / f"chat-grouped-{mode}.png"))

    # Seen from the next day, and from next year (the page's clock, the server's messages).
    sent = datetime.fromisoformat(message(page, "b1").locator("time").get_attribute("datetime").replace("Z", "+00:00"))
    page.clock.set_fixed_time(sent + timedelta(days=1))
    page.reload()
    expect(page.locator("#messages .day-divider")).to_have_text(["Yesterday"])
    page.clock.set_fixed_time(sent + timedelta(days=400))
    page.reload()
    expect(page.locator("#messages .day-divider")).to_have_text([re.compile(rf"\b{sent.year}\b")])
    assert items.evaluate_all("els => els.map(e => e.classList.contains('grouped'))") == grouped
