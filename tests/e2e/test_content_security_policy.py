"""Every page works under its Content-Security-Policy: Chromium reports no violation on any of them."""

from __future__ import annotations

import re
import subprocess

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import PASSWORD, new_username
from tests.support.live_server import ROOT, VENV_BIN

pytestmark = pytest.mark.e2e

# Runs before any page script and is not subject to the page's policy.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


def create_admin(server, username: str) -> None:
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "users", "create-admin", username, "--password", PASSWORD],
        cwd=ROOT,
        env=server.env(),
        check=True,
        capture_output=True,
    )


def test_login_register_chat_and_admin_pages_raise_no_csp_violation(shared_server, make_context):
    boss = new_username("boss")
    create_admin(shared_server, boss)
    context = make_context(shared_server.url)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    violations: list[str] = []

    def visit(path: str) -> None:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.contentType") == "text/html"
        violations.extend(f"{path}: {text}" for text in page.evaluate("window.__cspViolations"))

    visit("/register")
    expect(page.get_by_label("Confirm password")).to_be_visible()
    visit("/login")
    page.get_by_label("Username").fill(boss)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/(#.*)?$"))
    visit("/")
    expect(page.get_by_label(re.compile("^Message"))).to_be_visible()
    visit("/admin")
    expect(page.get_by_role("heading", name="Admin", exact=True)).to_be_visible()
    expect(page.locator("#admin-status")).not_to_have_text("Connecting…")
    violations.extend(f"/admin: {text}" for text in page.evaluate("window.__cspViolations"))

    assert violations == []
    assert [text for text in console_errors if "Content Security Policy" in text] == []


def test_an_inline_script_is_refused_by_the_policy(shared_server, make_context):
    """The check above can fail: a page that tries inline script is reported."""
    context = make_context(shared_server.url)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    page.goto("/login")

    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.__inlineRan = true";
          document.body.append(script);
        }"""
    )

    assert page.evaluate("window.__inlineRan === true") is False
    page.wait_for_function("window.__cspViolations.length > 0")
    assert any("script-src" in text for text in page.evaluate("window.__cspViolations"))
