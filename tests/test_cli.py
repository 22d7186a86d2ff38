"""`flask users ...` through the Flask CLI runner."""

import sqlalchemy as sa

from app.extensions import db
from app.models import User
from app.services import users


def stored(app, username: str) -> User | None:
    with app.app_context():
        user = users.find_user(username)
        if user is not None:
            db.session.expunge(user)
        return user


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(User.id)))


def can_sign_in(app, username: str, password: str) -> bool:
    with app.app_context():
        try:
            users.authenticate(username, password)
        except Exception:
            return False
        return True


def test_create_admin_with_a_password_creates_an_admin(app, runner):
    result = runner.invoke(args=["users", "create-admin", "boss", "--password", "password1"])
    assert result.exit_code == 0, result.output
    assert "Created admin boss" in result.output
    assert stored(app, "boss").is_admin is True
    assert can_sign_in(app, "boss", "password1")


def test_create_admin_promotes_an_existing_user_without_prompting(app, runner, make_user):
    ann = make_user("ann")
    result = runner.invoke(args=["users", "create-admin", "ann"])
    assert result.exit_code == 0, result.output
    assert "Promoted admin ann" in result.output
    assert "Password" not in result.output
    assert stored(app, "ann").is_admin is True
    assert can_sign_in(app, "ann", ann.password)
    assert user_count(app) == 1


def test_create_admin_on_an_existing_user_with_a_password_also_sets_it(app, runner, make_user):
    make_user("ann")
    result = runner.invoke(args=["users", "create-admin", "ANN", "--password", "a new password"])
    assert result.exit_code == 0, result.output
    assert stored(app, "ann").is_admin is True
    assert can_sign_in(app, "ann", "a new password")


def test_create_admin_without_a_password_prompts_hidden_and_confirmed(app, runner):
    result = runner.invoke(args=["users", "create-admin", "boss"], input="password1\npassword1\n")
    assert result.exit_code == 0, result.output
    assert "Password:" in result.output
    assert "Repeat for confirmation:" in result.output
    assert "password1" not in result.output
    assert stored(app, "boss").is_admin is True
    assert can_sign_in(app, "boss", "password1")


def test_create_admin_prompt_asks_again_when_the_two_entries_differ(app, runner):
    result = runner.invoke(
        args=["users", "create-admin", "boss"],
        input="password1\npassword2\nsecond try\nsecond try\n",
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert can_sign_in(app, "boss", "second try")


def test_create_admin_with_a_too_short_password_fails(app, runner):
    result = runner.invoke(args=["users", "create-admin", "boss", "--password", "short"])
    assert result.exit_code == 1
    assert "password must be 8-128 characters" in result.output
    assert user_count(app) == 0


def test_create_admin_with_a_too_short_prompted_password_fails(app, runner):
    result = runner.invoke(args=["users", "create-admin", "boss"], input="short\nshort\n")
    assert result.exit_code == 1
    assert "password must be 8-128 characters" in result.output
    assert user_count(app) == 0


def test_create_admin_with_an_invalid_name_fails(app, runner):
    result = runner.invoke(args=["users", "create-admin", "no spaces allowed", "--password", "password1"])
    assert result.exit_code == 1
    assert "username must be" in result.output
    assert user_count(app) == 0


def test_create_admin_with_a_too_short_password_leaves_an_existing_user_alone(app, runner, make_user):
    ann = make_user("ann")
    result = runner.invoke(args=["users", "create-admin", "ann", "--password", "short"])
    assert result.exit_code == 1
    assert stored(app, "ann").is_admin is False
    assert can_sign_in(app, "ann", ann.password)


def test_demote_takes_admin_rights_away(app, runner, make_user):
    make_user("boss", admin=True)
    result = runner.invoke(args=["users", "demote", "boss"])
    assert result.exit_code == 0, result.output
    assert "boss is no longer an admin" in result.output
    assert stored(app, "boss").is_admin is False


def test_demote_an_unknown_user_fails(runner):
    result = runner.invoke(args=["users", "demote", "nobody"])
    assert result.exit_code == 1
    assert "no such user" in result.output


def test_commands_have_help(runner):
    result = runner.invoke(args=["users", "--help"])
    assert result.exit_code == 0
    assert "create-admin" in result.output
    assert "demote" in result.output
    result = runner.invoke(args=["users", "create-admin", "--help"])
    assert "Create an admin account NAME" in result.output
    assert "--password" in result.output
