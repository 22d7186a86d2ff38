"""`flask files ...` commands for operators."""

import click
from flask import current_app
from flask.cli import AppGroup

from app.services import files

files_cli = AppGroup("files", help="Manage uploaded files.")


@files_cli.command("prune")
@click.option(
    "--older-than",
    type=int,
    default=None,
    help="Age in seconds (default: UPLOAD_PRUNE_AGE_SECONDS, one day).",
)
def prune(older_than: int | None) -> None:
    """Remove uploads no message uses that are older than a day, and blobs nothing references."""
    age = current_app.config["UPLOAD_PRUNE_AGE_SECONDS"] if older_than is None else older_than
    result = files.prune(current_app.extensions["switchboard.files"], age)
    click.echo(f"Removed {result.uploads} unused uploads and {result.blobs} unreferenced files.")
