"""A server killed with SIGKILL in the middle of uploads leaves no attachment row without its bytes."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from PIL import Image

from tests.support import api

pytestmark = pytest.mark.integration

UPLOADERS = 4


def noisy_png(seed: int) -> bytes:
    """About 1.5 MB that Pillow has to decode and scale: the server spends its time in the write path."""
    image = Image.effect_noise((720, 720), 40 + seed % 50).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def stored_rows(database_url: str) -> list[dict]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT id, size, sha256, thumbnail_sha256 FROM attachments"))
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


def blob(upload_dir: Path, digest: str) -> bytes | None:
    path = upload_dir / digest[:2] / digest
    return path.read_bytes() if path.exists() else None


@pytest.mark.timeout(180)
def test_sigkill_during_uploads_leaves_no_row_without_its_file(live_server_factory, tmp_path):
    upload_dir = tmp_path / "uploads"
    env = {"UPLOAD_DIR": str(upload_dir), "RATE_LIMIT_COUNT": "100000"}
    server = live_server_factory(env=env)
    token = api.register_and_token(server.url)["token"]
    bodies = [noisy_png(seed) for seed in range(UPLOADERS * 2)]
    acked: list[dict] = []
    lock = threading.Lock()
    stop = threading.Event()
    interrupted: list[int] = []

    def upload_until_stopped(index: int) -> None:
        count = 0
        while not stop.is_set():
            data = bodies[(index + count) % len(bodies)] + b"%d-%d" % (index, count)  # unique bytes each time
            count += 1
            try:
                response = requests.post(
                    server.url + "/api/uploads",
                    files={"file": (f"{index}-{count}.png", data)},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
            except requests.RequestException:
                interrupted.append(index)  # the server died under this upload
                return
            if response.status_code == 201:
                with lock:
                    acked.append({**response.json()["attachment"], "sha256": hashlib.sha256(data).hexdigest()})

    threads = [threading.Thread(target=upload_until_stopped, args=(index,), daemon=True) for index in range(UPLOADERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acked) < 8:
        assert time.monotonic() < deadline, server.log_text()[-2000:]
        time.sleep(0.02)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    assert interrupted, "no upload was in flight when the server was killed"

    rows = stored_rows(server.database_url)
    by_id = {row["id"]: row for row in rows}
    for attachment in acked:
        assert attachment["id"] in by_id, f"acknowledged upload {attachment['id']} lost"
        assert by_id[attachment["id"]]["sha256"] == attachment["sha256"]
    for row in rows:
        data = blob(upload_dir, row["sha256"])
        assert data is not None, f"row {row['id']} has no file"
        assert len(data) == row["size"] and hashlib.sha256(data).hexdigest() == row["sha256"], f"row {row['id']}"
        thumbnail = blob(upload_dir, row["thumbnail_sha256"])
        assert thumbnail is not None and hashlib.sha256(thumbnail).hexdigest() == row["thumbnail_sha256"]

    # After a restart every stored upload is served whole, and uploads go on.
    restarted = live_server_factory(database_url=server.database_url, env=env)
    headers = {"Authorization": f"Bearer {token}"}
    for attachment in acked:
        served = requests.get(restarted.url + attachment["url"], headers=headers, timeout=10)
        assert served.status_code == 200
        assert hashlib.sha256(served.content).hexdigest() == attachment["sha256"]
    again = requests.post(
        restarted.url + "/api/uploads", files={"file": ("after.txt", b"after the crash")}, headers=headers, timeout=10
    )
    assert again.status_code == 201
