"""What the browser tests do on Switchboard's pages: sign up, sign in, send and find messages."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import BrowserContext, Locator, Page, expect

PASSWORD = "correct horse battery"
# Reconnecting uses socket.io-client's backoff (up to 5 s between attempts) on a shared,
# busy machine: waits that span a reconnect get this much room.
RECONNECT_TIMEOUT_MS = 30_000


# How a test looks at the pages: a desktop window in the light theme, and a phone (390x844, touch)
# whose system asks for dark. Each item of the chat's behaviour runs in both; the axe-core checks
# and the screenshots of the main screens also cover the two other combinations.
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
MODES = {
    "desktop": {"color_scheme": "light"},
    "phone-dark": {**PHONE, "color_scheme": "dark"},
}
ALL_MODES = {
    **MODES,
    "desktop-dark": {"color_scheme": "dark"},
    "phone": {**PHONE, "color_scheme": "light"},
}


def new_username(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def register(page: Page, username: str, password: str = PASSWORD) -> None:
    """Create an account through the form; the browser ends up signed in on the chat page."""
    page.goto("/register")
    page.get_by_label("Username").fill(username)
    page.get_by_label(re.compile(r"^Password")).fill(password)
    page.get_by_label("Confirm password").fill(password)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/(#.*)?$"))


def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def chat_user(context: BrowserContext, prefix: str, path: str = "/") -> tuple[Page, str]:
    """A fresh account registered and signed in through the forms, on the chat page at ``path``."""
    page = context.new_page()
    username = new_username(prefix)
    register(page, username)
    if path != "/":
        page.goto(path)
    wait_connected(page)
    return page, username


def wait_connected(page: Page, timeout: float = 10_000) -> None:
    expect(page.locator("#connection-status")).to_have_text("Connected", timeout=timeout)


def composer(page: Page) -> Locator:
    return page.get_by_label(re.compile(r"^Message"))


def send(page: Page, body: str) -> None:
    box = composer(page)
    box.fill(body)
    box.press("Enter")


def messages(page: Page) -> Locator:
    return page.locator("#messages > li")


def message(page: Page, body: str) -> Locator:
    """The list item of the message whose body is exactly ``body``."""
    return messages(page).filter(has=page.locator(".body", has_text=re.compile(f"^{re.escape(body)}$")))


def show_sidebar(page: Page) -> None:
    """On a phone the sidebar is behind the "Conversations" button."""
    toggle = page.get_by_role("button", name="Conversations")
    if toggle.is_visible() and toggle.get_attribute("aria-expanded") != "true":
        toggle.click()


def open_room(page: Page, room: str) -> None:
    show_sidebar(page)
    page.locator("#room-list").get_by_role("link", name=re.compile(rf"^#{re.escape(room)}\b")).click()
    expect(page.locator("#conversation-title")).to_have_text(f"#{room}")


def join_room(page: Page, room: str, *, private: bool = False) -> None:
    """Join ``room`` from the room directory, creating it (public, or private) if it does not exist."""
    show_sidebar(page)
    page.get_by_role("button", name="Browse rooms").click()
    dialog = page.get_by_role("dialog", name="Rooms")
    dialog.get_by_label("Find or create a room").fill(room)
    action = dialog.get_by_role("button", name=re.compile(rf"^(Join|Open|Create) #{re.escape(room)}$"))
    expect(action).to_be_visible()
    if private:
        dialog.get_by_label("Private").check()
    action.click()
    expect(page.locator("#conversation-title")).to_have_text(f"#{room}")
    expect(composer(page)).to_be_focused()


def unread_badge(page: Page, room: str) -> Locator:
    return page.locator(f'#room-list li[data-room="{room}"] .unread')


def message_bodies(page: Page) -> list[str]:
    return page.locator("#messages > li[data-id] .body").all_text_contents()
