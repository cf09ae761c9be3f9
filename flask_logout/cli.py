"""``flask logout ...``: operating the store from the command line.

Registered by the extension on ``app.cli``. Each command prints what it did
and exits non-zero with a message on bad input.
"""

from __future__ import annotations

import time

import click
from flask import current_app
from flask.cli import AppGroup

logout_cli = AppGroup("logout", help="Revoke tokens and maintain the flask-logout store.")


@logout_cli.command("purge")
@click.option(
    "--grace",
    default=86400,
    show_default=True,
    type=click.IntRange(min=0),
    help="Keep expired token rows this many seconds, so late tokens still answer 'expired'.",
)
def purge_command(grace: int) -> None:
    """Delete revocation records and token rows that can no longer matter."""
    service = current_app.extensions["flask_logout"].service
    try:
        counts = service.store.purge(int(time.time()), token_grace=grace)
    except Exception as exc:
        raise click.ClickException(f"the store could not be purged: {exc.__class__.__name__}") from None
    click.echo(
        "purged {events} log entries, {tokens} token rows, {families} sessions, {seen} logout-token ids".format(
            **counts
        )
    )
