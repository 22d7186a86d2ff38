"""axe-core finds no serious or critical accessibility problem on the main pages."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.e2e.bots import make_admin
from tests.e2e.pages import chat_user, join_room, new_username, send, sign_in
from tests.support.live_server import ROOT

pytestmark = pytest.mark.e2e

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


def serious_violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_login_register_and_error_pages(shared_server, make_context, scheme):
    # The test injects axe as an inline script, which the pages' CSP rightly refuses.
    page = make_context(shared_server.url, bypass_csp=True, color_scheme=scheme).new_page()
    for path in ("/login", "/register", "/no-such-page"):
        page.goto(path)
        problems = serious_violations(page)
        assert problems == [], f"{path}: {json.dumps(problems, indent=1)}"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_chat_page_with_messages_and_dialogs(shared_server, make_context, bots, scheme):
    page, ann = chat_user(make_context(shared_server.url, bypass_csp=True, color_scheme=scheme), "ann")
    bob = bots()
    room = new_username("axe")
    bob.call("join", {"room": room})
    join_room(page, room)
    bob.say(room, f"hello @{ann}, see https://example.com and **this**", client_id=new_username("c"))
    send(page, "a reply of mine")
    bob.dm(ann, "a direct word")
    expect(page.locator(f'#dm-list li[data-user="{bob.username}"] .unread')).to_have_text("1")
    expect(page.locator("#messages > li[data-id]")).to_have_count(2)

    assert serious_violations(page) == []
    page.get_by_role("button", name="Browse rooms").click()
    expect(page.get_by_role("dialog", name="Rooms")).to_be_visible()
    assert serious_violations(page) == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_admin_dashboard(shared_server, make_context, scheme):
    admin_name = new_username("boss")
    make_admin(shared_server, admin_name)
    page = make_context(shared_server.url, bypass_csp=True, color_scheme=scheme).new_page()
    sign_in(page, admin_name)
    page.goto("/admin")
    expect(page.locator("#admin-status")).not_to_have_text("Connecting…")
    assert serious_violations(page) == []
