"""The chat page's interactive parts (dialogs, reactions, Markdown, theme) raise no CSP violation."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import chat_user, composer, join_room, message, new_username, send, show_sidebar

pytestmark = pytest.mark.e2e

# Runs before any page script and is not subject to the page's policy.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


def test_everything_on_the_chat_page_runs_under_the_servers_policy(shared_server, make_context):
    context = make_context(shared_server.url)
    context.add_init_script(RECORD_VIOLATIONS)
    page, _ann = chat_user(context, "ann")
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    room = new_username("csp")

    join_room(page, room)
    send(page, "**strict** and https://example.com")
    item = message(page, "strict and https://example.com")
    expect(item.locator("strong")).to_have_text("strict")
    item.hover()
    item.get_by_role("button", name="Add reaction").click()
    page.get_by_role("button", name="React with 🎉").click()
    expect(item.get_by_role("button", name="🎉 1")).to_be_visible()
    show_sidebar(page)
    page.get_by_role("button", name="New message").click()
    page.keyboard.press("Escape")
    expect(composer(page)).to_be_focused()
    page.get_by_role("button", name="Dark mode").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert page.evaluate("() => window.cspViolations") == []
    assert errors == []

    # The check can fail: an inline style attribute is reported.
    page.evaluate(
        "() => { const probe = document.createElement('div'); probe.setAttribute('style', 'color: red'); document.body.append(probe); }"
    )
    page.wait_for_function("() => window.cspViolations.length > 0")
    assert page.evaluate("() => window.cspViolations")[0].startswith("style-src")
