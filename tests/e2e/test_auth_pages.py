"""The account pages in a real browser: signing up and in through the forms, and what goes wrong."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import MODES, PASSWORD, new_username, register, sign_in, wait_connected
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e


def fill_register(page, username, password, confirm):
    page.goto("/register")
    page.get_by_label("Username").fill(username)
    page.get_by_label(re.compile(r"^Password")).fill(password)
    page.get_by_label("Confirm password").fill(confirm)
    page.get_by_role("button", name="Create account").click()


def test_register_sign_out_and_sign_in_again(mode_context, mode, artifacts_dir):
    page = mode_context().new_page()
    username = new_username("carol")

    register(page, username)
    wait_connected(page)
    expect(page.locator(".whoami")).to_have_text(username)
    page.get_by_role("button", name="Sign out").click()

    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("status")).to_contain_text("You have signed out.")
    page.screenshot(path=str(artifacts_dir / f"login-page-{mode}.png"), full_page=True)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/$"))
    wait_connected(page)


def test_register_form_says_what_is_wrong(shared_server, make_context):
    page = make_context(shared_server.url).new_page()
    taken = new_username("dave")
    register(page, taken)
    page.get_by_role("button", name="Sign out").click()

    fill_register(page, "ab", "short", "other")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Username: Use 3 to 32 characters.")
    expect(alert).to_contain_text("Password: Use 8 to 128 characters.")
    expect(alert).to_contain_text("Confirm password: The passwords do not match.")
    expect(page.get_by_label("Username")).to_have_attribute("aria-invalid", "true")

    fill_register(page, "bad name!", PASSWORD, PASSWORD)
    expect(page.get_by_role("alert")).to_contain_text("Use only letters A-Z (no accents), digits")

    fill_register(page, taken.upper(), PASSWORD, PASSWORD)
    expect(page.get_by_role("alert")).to_contain_text("That username is taken.")
    expect(page).to_have_url(re.compile(r"/register$"))

    # The refused sign-ups created nothing: their names cannot sign in.
    sign_in(page, "ab", "short")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")


def test_sign_in_form_says_what_is_wrong(shared_server, make_context):
    context = make_context(shared_server.url)
    page = context.new_page()
    username = new_username("erin")
    register(page, username)
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, username, "not the password")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_label("Username")).to_have_value(username)

    sign_in(page, "", "")
    expect(page.get_by_role("alert")).to_contain_text("Username: This field is required.")

    # An expired form: the session (and its CSRF token) is gone when the form is sent.
    page.goto("/login")
    context.clear_cookies()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Your form expired or was sent from elsewhere. Please try again.")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)

    sign_in(page, username)
    expect(page).to_have_url(re.compile(r"/$"))
    wait_connected(page)


def test_the_username_rule_is_shown_before_submitting_in_words_that_are_true(mode_context, mode, artifacts_dir):
    page = mode_context().new_page()
    page.goto("/register")
    username = page.get_by_label("Username")
    expect(username).to_have_accessible_description("3-32 characters: letters A-Z, digits, _ . -")
    expect(page.locator("#username-hint")).to_be_visible()
    page.screenshot(path=str(artifacts_dir / f"register-page-{mode}.png"), full_page=True)

    fill_register(page, "Zoë", PASSWORD, PASSWORD)
    expect(page.get_by_role("alert")).to_contain_text("Username: Use only letters A-Z (no accents), digits")
    expect(page.get_by_label("Username")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Username")).to_have_value("Zoë")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= page.viewport_size["width"]


def test_403_and_404_are_styled_pages_that_lead_back(mode_context, mode, artifacts_dir):
    page = mode_context().new_page()
    register(page, new_username("fay"))

    for path, status, heading in [("/admin", 403, "You cannot open this page"), ("/nowhere", 404, "Page not found")]:
        response = page.goto(path)
        assert response.status == status
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        expect(page.locator(".error-code")).to_have_text(str(status))
        expect(page.get_by_role("button", name="Dark mode")).to_be_visible()
        page.screenshot(path=str(artifacts_dir / f"error-{status}-{mode}.png"))
        page.get_by_role("link", name="Back to the chat").click()
        expect(page).to_have_url(re.compile(r"/(#.*)?$"))
        wait_connected(page)


def test_signing_out_in_one_tab_signs_out_the_other_tabs_and_devices(shared_server, make_context):
    laptop = make_context(shared_server.url)
    first_tab = laptop.new_page()
    username = new_username("erin")
    register(first_tab, username)
    wait_connected(first_tab)
    second_tab = laptop.new_page()
    second_tab.goto("/")
    wait_connected(second_tab)
    phone = make_context(shared_server.url).new_page()
    sign_in(phone, username)
    wait_connected(phone)

    first_tab.get_by_role("button", name="Sign out").click()

    expect(first_tab).to_have_url(re.compile(r"/login$"))
    # Both tabs share one cookie jar, so either may show the "signed out" notice.
    expect(second_tab).to_have_url(re.compile(r"/login\?next=/$"))
    expect(phone).to_have_url(re.compile(r"/login\?next=/$"))
    expect(phone.get_by_role("status")).to_contain_text("Please sign in to chat.")
    phone.goto("/")
    expect(phone).to_have_url(re.compile(r"/login\?next=/$"))


def test_a_server_error_is_a_styled_page_that_leads_back(make_context, mode, artifacts_dir, tmp_path):
    # A real server whose database was never migrated: signing in fails inside the app.
    server = LiveServer(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path / "server.log").start(
        migrate=False, healthy=False
    )
    try:
        page = make_context(server.url, **MODES[mode]).new_page()
        page.goto("/login")
        page.get_by_label("Username").fill("nobody")
        page.get_by_label("Password").fill(PASSWORD)
        with page.expect_response(lambda response: response.request.method == "POST") as answer:
            page.get_by_role("button", name="Sign in").click()
        assert answer.value.status == 500
        expect(page.get_by_role("heading", level=1)).to_have_text("Something went wrong")
        expect(page.locator(".error-code")).to_have_text("500")
        expect(page.get_by_role("button", name="Dark mode")).to_be_visible()
        expect(page.get_by_role("link", name="Back to the chat")).to_be_visible()
        assert "Traceback" not in page.content()
        page.screenshot(path=str(artifacts_dir / f"error-500-{mode}.png"))
    finally:
        server.stop()
