"""`flask users ...` commands for operators."""

import click
from flask.cli import AppGroup

from app.errors import ServiceError
from app.services import users

users_cli = AppGroup("users", help="Manage Switchboard accounts.")


@users_cli.command("create-admin")
@click.argument("name")
@click.option(
    "--password",
    help="Password for a new account (prompted, hidden and confirmed, if omitted).",
)
def create_admin(name: str, password: str | None) -> None:
    """Create an admin account NAME, or promote the existing user NAME to admin."""
    if password is None and users.find_user(name) is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user, created = users.create_admin(name, password)
    except ServiceError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"{'Created' if created else 'Promoted'} admin {user.username} (id {user.id}).")


@users_cli.command("demote")
@click.argument("name")
def demote(name: str) -> None:
    """Take admin rights away from NAME."""
    try:
        user = users.set_admin(name, False)
    except ServiceError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"{user.username} is no longer an admin.")
