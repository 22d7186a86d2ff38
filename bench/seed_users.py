"""Create benchmark users straight in the database and print their API tokens as JSON.

Registering 10,000 users through POST /api/register would hash 10,000 passwords (seconds of CPU
each hundred) on the very core being measured. The benchmark is about sockets, so this writes the
rows in one transaction instead, with one password hash shared by every user, makes each a member
of `general` as registration does, and issues tokens with the server's own ``issue_token``.

Run with the server's environment (DATABASE_URL, SECRET_KEY), after ``flask db upgrade``:
``python bench/seed_users.py --count 1000 --prefix s1`` prints ``{"users": [{"id", "username", "token"}]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402
from app.database import write_transaction  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import RoomMembership, User, utcnow  # noqa: E402
from app.services import users  # noqa: E402
from app.services.rooms import ensure_general  # noqa: E402

BENCH_PASSWORD = "bench-password"
BATCH = 2000


def seed(count: int, prefix: str) -> list[dict]:
    app = create_app()
    with app.app_context():
        template = User(username="template", username_key="template")
        template.set_password(BENCH_PASSWORD)
        names = [f"{prefix}{index:06d}" for index in range(count)]
        with write_transaction() as session:
            general = ensure_general(session)
            for start in range(0, count, BATCH):
                chunk = names[start : start + BATCH]
                session.execute(
                    sa.insert(User),
                    [
                        {
                            "username": name,
                            "username_key": name.lower(),
                            "password_hash": template.password_hash,
                            "created_at": utcnow(),
                        }
                        for name in chunk
                    ],
                )
                ids = session.scalars(sa.select(User.id).where(User.username_key.in_([n.lower() for n in chunk])))
                session.execute(
                    sa.insert(RoomMembership),
                    [{"user_id": user_id, "room_id": general.id, "joined_at": utcnow()} for user_id in ids],
                )
        created = db.session.scalars(
            sa.select(User).where(User.username_key.in_([n.lower() for n in names])).order_by(User.username_key)
        )
        secret, ttl = app.config["SECRET_KEY"], app.config["TOKEN_TTL_SECONDS"]
        return [
            {"id": user.id, "username": user.username, "token": users.issue_token(user, secret, ttl)["token"]}
            for user in created
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefix", required=True, help="usernames are <prefix><6-digit index>")
    args = parser.parse_args()
    json.dump({"users": seed(args.count, args.prefix)}, sys.stdout)


if __name__ == "__main__":
    main()
