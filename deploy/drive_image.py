"""Drive a running Switchboard as a new user would: register, take a token, connect two Socket.IO
clients (one over websocket, one over long-polling), send a message from the first and check its
ack, its delivery to the second, and that HTTP reads it back.

    python drive_image.py http://127.0.0.1:5000

deploy/check-image.sh runs it inside the image (which has python-socketio and requests), beside
the server under test. Prints one line of JSON with what it saw; exits non-zero on any surprise.
"""

import json
import sys
import threading
import time
import uuid

import requests
import socketio

WAIT_SECONDS = 20


def main(url: str) -> None:
    started = time.monotonic()
    username = f"drive{uuid.uuid4().hex[:8]}"
    password = f"image check {uuid.uuid4().hex}"
    registered = requests.post(f"{url}/api/register", json={"username": username, "password": password}, timeout=10)
    assert registered.status_code == 201, registered.text
    answer = requests.post(f"{url}/api/token", json={"username": username, "password": password}, timeout=10)
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]

    delivered = threading.Event()
    received: list[dict] = []
    sender = socketio.Client(reconnection=False)
    listener = socketio.Client(reconnection=False)

    @listener.on("message")
    def on_message(message):
        received.append(message)
        delivered.set()

    listener.connect(url, auth={"token": token}, transports=["polling"], wait_timeout=WAIT_SECONDS)
    sender.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=WAIT_SECONDS)
    try:
        client_id = uuid.uuid4().hex
        ack = sender.call("message", {"room": "general", "body": "hello from the image check", "client_id": client_id})
        assert ack["ok"] is True, ack
        message = ack["message"]
        assert message["client_id"] == client_id and message["sender"]["username"] == username, message
        assert delivered.wait(WAIT_SECONDS), "the message never reached the user's other socket"
        assert received[0]["id"] == message["id"], received
        transports = [sender.transport(), listener.transport()]
    finally:
        sender.disconnect()
        listener.disconnect()
    page = requests.get(
        f"{url}/api/rooms/general/messages", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    assert message["id"] in [stored["id"] for stored in page["messages"]], page
    print(
        json.dumps(
            {
                "ack": "ok",
                "message_id": message["id"],
                "transports": transports,
                "delivered": len(received),
                "seconds": round(time.monotonic() - started, 2),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000")
