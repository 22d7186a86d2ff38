"""Two people chatting in real Chromium pages against a real server."""

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import chat_user, join_room, message, open_room, send

pytestmark = pytest.mark.e2e


def test_room_exchange_both_ways(live_server, make_context):
    ann_page, ann = chat_user(make_context(live_server.url), "ann")
    bob_page, bob = chat_user(make_context(live_server.url), "bob")

    join_room(ann_page, "lobby")
    join_room(bob_page, "lobby")
    send(ann_page, "hello from ann")
    expect(message(ann_page, "hello from ann")).to_have_attribute("data-status", "sent")
    expect(message(bob_page, "hello from ann")).to_contain_text(ann)
    send(bob_page, "hi ann, bob here")
    expect(message(ann_page, "hi ann, bob here")).to_contain_text(bob)
    expect(message(bob_page, "hi ann, bob here")).to_have_count(1)
    open_room(ann_page, "general")
