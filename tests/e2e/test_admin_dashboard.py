"""The admin dashboard in Chromium: an admin watches a user come online, announces, and bans them."""

from __future__ import annotations

import re
import subprocess

import pytest
from playwright.sync_api import Page, expect

from tests.support import api
from tests.support.live_server import ROOT, VENV_BIN

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
TIMEOUT_MS = 15_000


def create_admin(server, username: str) -> None:
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "users", "create-admin", username, "--password", PASSWORD],
        cwd=ROOT,
        env=server.env(),
        check=True,
        capture_output=True,
    )


def sign_in(page: Page, username: str, next_path: str = "/") -> None:
    page.goto(f"/login?next={next_path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"{re.escape(next_path)}$"))


@pytest.fixture
def contexts(browser, live_server):
    opened = []

    def open_context():
        context = browser.new_context(base_url=live_server.url)
        context.set_default_timeout(TIMEOUT_MS)
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        context.close()


def test_admin_sees_a_user_announces_and_bans_them(live_server, contexts, artifacts_dir):
    boss = api.new_username("boss")
    alice = api.new_username("alice")
    create_admin(live_server, boss)
    api.register_and_token(live_server.url, alice, PASSWORD)

    anonymous = contexts().request.get("/admin", max_redirects=0)
    assert anonymous.status == 302 and "/login?next=/admin" in anonymous.headers["location"]

    admin_page = contexts().new_page()
    sign_in(admin_page, boss, "/admin")
    expect(admin_page.locator("#admin-status")).to_have_text("Connected")
    sockets = admin_page.locator("#sockets-body")
    expect(sockets).to_contain_text(boss)  # the dashboard's own `/` socket
    expect(sockets).not_to_contain_text(alice)

    user_context = contexts()
    user_page = user_context.new_page()
    sign_in(user_page, alice)
    assert user_context.request.get("/admin").status == 403
    expect(user_page.locator("#connection-status")).to_have_text("Connected")

    # The user comes online: the socket list and the statistics follow without a reload.
    expect(sockets).to_contain_text(alice)
    kick = admin_page.get_by_role("button", name=re.compile(rf"^Kick {alice} "))
    expect(kick).to_be_visible()
    expect(admin_page.locator("#stat-users-online")).to_have_text("2")
    # Kick asks first; cancelled, the socket stays.
    kick.click()
    asked = admin_page.get_by_role("dialog", name=f"Kick {alice}?")
    expect(asked).to_be_visible()
    asked.get_by_role("button", name="Cancel").click()
    expect(asked).to_be_hidden()
    expect(user_page.locator("#connection-status")).to_have_text("Connected")

    admin_page.get_by_label("Announcement text").fill("Maintenance at noon <b>sharp</b>")
    admin_page.get_by_role("button", name="Send announcement").click()
    expect(user_page.locator("#announcement")).to_contain_text("Maintenance at noon <b>sharp</b>")
    expect(admin_page.locator("#admin-feedback")).to_have_text("Announcement sent to everyone online.")

    # Keyboard only: a reason typed in its labelled field, then the ban button pressed with Enter.
    admin_page.get_by_label("Ban reason (optional)").fill("spam")
    ban = admin_page.get_by_role("button", name=f"Ban {alice}")
    ban.focus()
    ban.press("Enter")
    # Nothing happens before the admin confirms; Cancel leaves everything as it was.
    dialog = admin_page.get_by_role("dialog", name=f"Ban {alice}?")
    expect(dialog).to_contain_text("Reason: spam.")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(user_page.locator("#connection-status")).not_to_have_text("Disconnected: banned")
    ban.press("Enter")
    confirm = dialog.get_by_role("button", name="Ban")
    expect(confirm).to_be_focused()
    # Enter on the focused confirmation (the locator keeps the key on that button even if a list
    # refresh lands in between).
    confirm.press("Enter")
    expect(dialog).to_be_hidden()

    expect(admin_page.locator("#admin-feedback")).to_have_text(f"Banned {alice}.")
    expect(user_page.locator("#connection-status")).to_have_text("Disconnected: banned")
    expect(admin_page.get_by_role("button", name=f"Unban {alice}")).to_be_visible()
    expect(admin_page.get_by_label("Ban reason (optional)")).to_have_value("")
    expect(sockets).not_to_contain_text(alice)
    latest = admin_page.locator("#audit-body tr").first
    expect(latest).to_contain_text("ban")
    expect(latest).to_contain_text(alice)
    expect(latest).to_contain_text("spam")
    expect(admin_page.locator("#audit-body")).to_contain_text("announce")
    admin_page.screenshot(path=str(artifacts_dir / "admin-dashboard.png"), full_page=True)

    # Signed out by the ban: the next sign-in is refused with the reason.
    refused = contexts().new_page()
    refused.goto("/login")
    refused.get_by_label("Username").fill(alice)
    refused.get_by_label("Password").fill(PASSWORD)
    refused.get_by_role("button", name="Sign in").click()
    expect(refused.get_by_text("this account is banned: spam")).to_be_visible()


def test_a_socket_a_deleted_message_and_an_audit_entry_open_their_user(
    shared_admin, mode_context, mode, bots, artifacts_dir
):
    boss = shared_admin
    mallory = bots(api.new_username("mal"))
    spam = mallory.say("general", f"buy cheap things {mallory.username}")
    page = mode_context(timezone_id="Asia/Kathmandu", locale="en-GB").new_page()
    sign_in(page, boss, "/admin")
    expect(page.locator("#admin-status")).to_have_text("Connected")
    users = page.locator("#users-body")
    query = page.get_by_label("Search users")

    # Kick asks first; cancelled, nothing happens.
    page.get_by_role("button", name=re.compile(rf"^Kick {mallory.username} ")).click()
    asked = page.get_by_role("dialog", name=f"Kick {mallory.username}?")
    expect(asked.get_by_role("button", name="Kick")).to_be_focused()
    asked.get_by_role("button", name="Cancel").click()
    expect(asked).to_be_hidden()
    expect(page.locator("#sockets-body")).to_contain_text(mallory.username)

    # The sockets list: the username opens the user in Users, with their state and actions.
    page.get_by_role("button", name=re.compile(rf"^Show {mallory.username} in Users \(socket ")).click()
    expect(query).to_have_value(mallory.username)
    shown = users.locator("tr.shown")
    expect(shown).to_have_count(1)
    expect(shown).to_contain_text(mallory.username)
    expect(shown).to_contain_text("online")
    expect(shown.locator(".user-name")).to_be_focused()
    expect(shown.get_by_role("button", name=f"Ban {mallory.username}")).to_be_visible()

    # A message deleted by its id names its sender, who opens the same way.
    query.fill("")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(users.locator("tr.shown")).to_have_count(0)
    page.get_by_label("Message id").fill(str(spam["id"]))
    page.get_by_role("button", name="Delete message").click()
    feedback = page.locator("#admin-feedback")
    expect(feedback).to_have_text(f"Deleted message {spam['id']} from {mallory.username}.")
    feedback.get_by_role("button", name=f"Show {mallory.username} in Users (message {spam['id']})").click()
    expect(query).to_have_value(mallory.username)
    expect(users.locator("tr.shown .user-name")).to_be_focused()

    # Muted from there: the audit entry links back to the user, its end time in the viewer's locale.
    page.get_by_label("Mute for (minutes)").fill("90")
    users.locator("tr.shown").get_by_role("button", name=f"Mute {mallory.username}").click()
    expect(users.locator("tr.shown")).to_contain_text("muted until")
    entry = page.locator("#audit-body tr").first
    expect(entry).to_contain_text("mute")
    expect(entry).to_contain_text("5400 seconds, until ")
    expect(entry).not_to_contain_text("Z")  # no raw ISO time
    deleted = page.locator("#audit-body tr").nth(1)
    expect(deleted).to_contain_text("delete_message")
    expect(
        deleted.get_by_role("button", name=re.compile(rf"^Show {mallory.username} in Users \(audit"))
    ).to_be_visible()

    query.fill(boss)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(users).not_to_contain_text(mallory.username)
    entry.get_by_role("button", name=re.compile(rf"^Show {mallory.username} in Users \(audit entry \d+\)$")).click()
    shown = users.locator("tr.shown")
    expect(shown).to_contain_text("muted until")
    expect(shown.locator(".user-name")).to_be_focused()
    unmute = shown.get_by_role("button", name=f"Unmute {mallory.username}")
    expect(unmute).to_be_visible()
    page.screenshot(path=str(artifacts_dir / f"admin-user-shown-{mode}.png"), full_page=True)

    # Ban asks first, and the reason it was given does not carry over to the next one.
    page.get_by_label("Ban reason (optional)").fill("spam")
    shown.get_by_role("button", name=f"Ban {mallory.username}").click()
    dialog = page.get_by_role("dialog", name=f"Ban {mallory.username}?")
    expect(dialog).to_contain_text("Reason: spam.")
    page.screenshot(path=str(artifacts_dir / f"admin-confirm-{mode}.png"))
    dialog.get_by_role("button", name="Ban").click()
    expect(feedback).to_have_text(f"Banned {mallory.username}.")
    expect(page.get_by_label("Ban reason (optional)")).to_have_value("")
    expect(shown).to_contain_text("banned: spam")
    expect(shown.get_by_role("button", name=f"Unban {mallory.username}")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= page.viewport_size["width"]


def test_a_ban_confirmed_while_an_earlier_prompts_close_is_still_queued_goes_through(
    shared_admin, make_context, shared_server, bots
):
    """A dialog's close event is queued, not dispatched at once: when the next prompt opens before
    the earlier one's close event ran, that event must not answer the new prompt."""
    boss = shared_admin
    target = bots(api.new_username("late"))
    page = make_context(shared_server.url).new_page()
    sign_in(page, boss, "/admin")
    expect(page.locator("#admin-status")).to_have_text("Connected")
    page.get_by_label("Search users").fill(target.username)
    page.get_by_role("button", name="Search", exact=True).click()
    ban = page.get_by_role("button", name=f"Ban {target.username}")
    ban.click()
    dialog = page.get_by_role("dialog", name=f"Ban {target.username}?")
    expect(dialog).to_be_visible()
    # Cancel, and ask again in the same task: the cancel's close event is dispatched only after
    # the second prompt has opened.
    page.evaluate(
        """(name) => {
            const dialog = document.getElementById("admin-confirm");
            dialog.close("cancel");
            [...document.querySelectorAll("button")].find((b) => b.getAttribute("aria-label") === `Ban ${name}`).click();
        }""",
        target.username,
    )
    confirm = dialog.get_by_role("button", name="Ban")
    expect(confirm).to_be_focused()
    confirm.click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#admin-feedback")).to_have_text(f"Banned {target.username}.")
