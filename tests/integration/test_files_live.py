"""Files on a real server: binary uploads over websocket and long-polling (Node and python-socketio
clients), HTTP uploads with a token and with a signed-in browser's cookie and CSRF token."""

from __future__ import annotations

import hashlib

import pytest
import requests

from tests.integration.conftest import TRANSPORTS, hidden_input, login_cookie
from tests.support import images

pytestmark = pytest.mark.integration

SOCKET_LIMIT = 512 * 1024


def noisy_png(approximate_bytes: int) -> bytes:
    """A PNG of about ``approximate_bytes``: noise does not compress."""
    import io

    from PIL import Image

    side = int((approximate_bytes / 2.2) ** 0.5)
    out = io.BytesIO()
    Image.effect_noise((side, side), 100).convert("RGB").save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_node_client_uploads_binary_over_each_transport(transport, account, chat_server, run_node, tmp_path):
    alice = account()
    image = noisy_png(100_000)
    assert 70_000 < len(image) < SOCKET_LIMIT
    image_path = tmp_path / "image.png"
    image_path.write_bytes(image)

    seen = run_node(
        "upload.mjs",
        {
            "url": chat_server.url,
            "token": alice.token,
            "transport": transport,
            "imagePath": str(image_path),
            "limit": SOCKET_LIMIT,
        },
    )

    assert seen["transportUsed"] == transport
    assert seen["imageAck"]["ok"] is True, seen["imageAck"]
    attachment = seen["imageAck"]["attachment"]
    assert attachment["type"] == "image/png"
    assert attachment["size"] == len(image)
    assert attachment["name"] == "camera roll.txt"
    assert attachment["width"] == attachment["height"] > 0
    assert attachment["thumbnail_url"]
    assert seen["served"] == {"status": 200, "type": "image/png", "sha256": hashlib.sha256(image).hexdigest()}
    assert seen["tooLargeAck"]["ok"] is False and seen["tooLargeAck"]["error"]["code"] == "too_large"
    assert seen["connectedAfterTooLarge"] is True
    assert seen["atLimitAck"]["ok"] is True and seen["atLimitAck"]["attachment"]["size"] == SOCKET_LIMIT
    assert seen["stringDataAck"]["ok"] is False and seen["stringDataAck"]["error"]["code"] == "invalid"
    assert seen["messageAck"]["ok"] is True, seen["messageAck"]
    assert seen["messageAck"]["message"]["body"] == ""
    assert seen["messageAck"]["message"]["attachments"] == [attachment]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_python_client_uploads_binary_over_each_transport(transport, account, connect, chat_server):
    alice = account()
    client = connect(alice, transport)
    data = images.image_bytes("WEBP", (300, 200))

    answer = client.call("upload", {"name": "pic.webp", "type": "image/webp", "data": data})

    assert answer["ok"] is True, answer
    attachment = answer["attachment"]
    assert (attachment["type"], attachment["width"], attachment["height"]) == ("image/webp", 300, 200)
    headers = {"Authorization": f"Bearer {alice.token}"}
    original = requests.get(chat_server.url + attachment["url"], headers=headers, timeout=10)
    assert original.status_code == 200 and original.content == data
    thumbnail = requests.get(chat_server.url + attachment["thumbnail_url"], headers=headers, timeout=10)
    assert thumbnail.status_code == 200
    assert thumbnail.headers["X-Content-Type-Options"] == "nosniff"
    too_large = client.call("upload", {"name": "big.bin", "data": b"\0" * (SOCKET_LIMIT + 1)})
    assert too_large["ok"] is False and too_large["error"]["code"] == "too_large"
    assert client.connected


def test_http_upload_with_a_token_and_with_the_browser_cookie_and_csrf_token(account, chat_server):
    alice = account()
    data = images.image_bytes("PNG", (900, 300))

    with_token = requests.post(
        chat_server.url + "/api/uploads",
        files={"file": ("wide.png", data, "image/png")},
        headers={"Authorization": f"Bearer {alice.token}"},
        timeout=10,
    )
    assert with_token.status_code == 201, with_token.text
    assert with_token.json()["attachment"]["width"] == 900

    cookie = login_cookie(chat_server.url, alice)
    page = requests.get(chat_server.url + "/", headers={"Cookie": cookie}, timeout=10)
    csrf_token = hidden_input(page.text, "csrf_token")
    with_cookie = requests.post(
        chat_server.url + "/api/uploads",
        files={"file": ("note.txt", b"hello", "text/plain")},
        headers={"Cookie": cookie, "X-CSRFToken": csrf_token},
        timeout=10,
    )
    assert with_cookie.status_code == 201, with_cookie.text
    served = requests.get(
        chat_server.url + with_cookie.json()["attachment"]["url"], headers={"Cookie": cookie}, timeout=10
    )
    assert served.status_code == 200 and served.content == b"hello"
    assert served.headers["Content-Disposition"].startswith("attachment")

    without_csrf = requests.post(
        chat_server.url + "/api/uploads",
        files={"file": ("note.txt", b"forged", "text/plain")},
        headers={"Cookie": cookie},
        timeout=10,
    )
    assert without_csrf.status_code == 403
    assert without_csrf.json()["error"]["code"] == "forbidden"


def test_http_upload_over_10_mb_is_413_before_the_body_is_sent(account, chat_server):
    alice = account()
    too_big = b"\0" * (10 * 1024 * 1024 + 1)
    response = requests.post(
        chat_server.url + "/api/uploads",
        files={"file": ("big.bin", too_big)},
        headers={"Authorization": f"Bearer {alice.token}"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
