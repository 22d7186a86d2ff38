"""Files and search in real Chromium: attach by picker, drop and paste, previews, the search box."""

from __future__ import annotations

import io
import os
import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.pages import chat_user, composer, join_room, messages, new_username, open_room, send

pytestmark = pytest.mark.e2e


def png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def test_an_image_sent_from_the_picker_shows_as_a_sized_preview_to_both(shared_server, make_context):
    ann_page, _ann = chat_user(make_context(shared_server.url), "ann")
    bob_page, _bob = chat_user(make_context(shared_server.url), "bob")
    room = new_username("pics")
    join_room(ann_page, room)
    join_room(bob_page, room)

    ann_page.locator("#attach-input").set_input_files(
        files=[{"name": "sky.png", "mimeType": "image/png", "buffer": png((800, 200))}]
    )
    tray = ann_page.get_by_role("list", name="Files to send")
    expect(tray).to_contain_text("sky.png")
    expect(tray.locator(".tray-item.done")).to_have_count(1)
    composer(ann_page).press("Enter")

    for page in (ann_page, bob_page):
        preview = messages(page).last.locator(".attachment.image img")
        expect(preview).to_have_attribute("alt", "sky.png")
        # The box is reserved before the thumbnail loads: 800 x 200 shown at most 400 wide.
        expect(preview).to_have_attribute("width", "400")
        expect(preview).to_have_attribute("height", "100")
        expect(preview).to_have_js_property("naturalWidth", 400)
        link = messages(page).last.locator(".attachment.image a")
        expect(link).to_have_attribute("href", re.compile(r"^/files/\d+/sky\.png$"))
    expect(tray).to_be_hidden()


def test_a_large_file_goes_over_http_and_shows_as_a_card_with_a_download_link(shared_server, make_context):
    page, _user = chat_user(make_context(shared_server.url), "cat")
    data = os.urandom(700 * 1024)

    page.locator("#attach-input").set_input_files(
        files=[{"name": "report.bin", "mimeType": "application/octet-stream", "buffer": data}]
    )
    expect(page.locator(".tray-item.done")).to_have_count(1, timeout=20_000)
    send(page, "the report")

    card = messages(page).last.locator(".attachment.file")
    expect(card).to_contain_text("report.bin")
    expect(card).to_contain_text("700.0 KB")
    download = card.get_by_role("link", name="Download")
    href = download.get_attribute("href")
    response = page.request.get(href)
    assert response.status == 200
    assert response.body() == data
    assert response.headers["content-disposition"].startswith("attachment")


def test_a_dropped_file_and_a_pasted_image_join_the_tray(shared_server, make_context):
    page, _user = chat_user(make_context(shared_server.url), "dee")
    page.evaluate(
        """() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["dropped text"], "notes.txt", { type: "text/plain" }));
            const zone = document.querySelector(".conversation");
            zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
            zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }"""
    )
    page.evaluate(
        """async (bytes) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "clip.png", { type: "image/png" }));
            const input = document.getElementById("composer-input");
            input.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
        }""",
        list(png((20, 20))),
    )
    expect(page.locator(".tray-item.done")).to_have_count(2)
    composer(page).press("Enter")

    last = messages(page).last
    expect(last.locator(".attachment.file")).to_contain_text("notes.txt")
    expect(last.locator(".attachment.image img")).to_have_attribute("alt", "clip.png")


def test_search_is_focused_by_slash_groups_results_and_opens_the_conversation(shared_server, make_context):
    page, _user = chat_user(make_context(shared_server.url), "eve")
    room = new_username("notes")
    join_room(page, room)
    send(page, "Zoë ships the <b>release</b> today")
    expect(messages(page).last).to_contain_text("ships the")
    open_room(page, "general")
    send(page, "release notes for ZOË are ready")
    expect(messages(page).last).to_contain_text("release notes")

    page.locator("#message-scroller").click()
    page.keyboard.press("/")
    search = page.get_by_role("searchbox", name="Search messages")
    expect(search).to_be_focused()
    search.fill("zoë RELEASE")

    results = page.locator("#search-results")
    expect(results.locator(".search-result")).to_have_count(2)
    expect(results.get_by_role("region", name=f"#{room}")).to_have_count(1)
    expect(results.get_by_role("region", name="#general")).to_have_count(1)
    marks = results.get_by_role("region", name=f"#{room}").locator("mark")
    expect(marks).to_have_text(["Zoë", "release"])
    # Markup in a body stays text.
    expect(results.locator("b")).to_have_count(0)
    expect(results.get_by_role("region", name=f"#{room}")).to_contain_text("<b>release</b>")

    results.get_by_role("region", name=f"#{room}").locator(".search-result").click()
    expect(page.locator("#conversation-title")).to_have_text(f"#{room}")
    expect(results).to_be_hidden()
