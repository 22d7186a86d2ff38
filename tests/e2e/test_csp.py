"""The chat page works under a strict Content-Security-Policy: no inline script, style or handlers."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import chat_user, composer, join_room, message, new_username, send, show_sidebar, wait_connected

pytestmark = pytest.mark.e2e

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def with_policy(route):
    """Serve the page as the server does, with the strict policy added to every document."""
    response = route.fetch(max_redirects=0)
    headers = {**response.headers, "content-security-policy": POLICY}
    route.fulfill(response=response, headers=headers)


def test_everything_on_the_chat_page_runs_under_a_strict_policy(shared_server, make_context):
    context = make_context(shared_server.url)
    context.route(lambda url: "/socket.io/" not in url and "/static/" not in url, with_policy)
    violations = []
    context.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    page, _ann = chat_user(context, "ann")
    page.on("pageerror", lambda error: violations.append(str(error)))
    # A redirect followed by the browser is not routed again: load the chat page itself.
    page.goto("/")
    wait_connected(page)
    probe = """() => new Promise((resolve) => {
        document.addEventListener('securitypolicyviolation', (e) => resolve(e.violatedDirective), { once: true });
        const probe = document.createElement('div');
        probe.setAttribute('style', 'color: red');
        document.body.append(probe);
        setTimeout(() => resolve('no violation'), 2000);
    })"""
    assert page.evaluate(probe).startswith("style-src"), "the policy is not in force"
    page.evaluate("() => document.querySelectorAll('div[style]').forEach((node) => node.remove())")
    page.evaluate(
        "() => { window.cspViolations = []; document.addEventListener('securitypolicyviolation',"
        " (e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI)); }"
    )
    violations.clear()
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

    assert violations == []
    assert page.evaluate("() => window.cspViolations") == []
