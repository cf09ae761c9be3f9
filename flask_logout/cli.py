"""``flask logout ...``: operating the store from the command line.

Registered by the extension on ``app.cli``. Each command prints what it did
and exits non-zero with a message on bad input or when the store cannot be
reached. Tokens given on the command line are never echoed back.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from .errors import StoreUnavailable
from .extension import get_service
from .service import LogoutService

logout_cli = AppGroup("logout", help="Revoke tokens and maintain the flask-logout store.")

F = TypeVar("F", bound=Callable[..., Any])


def _store_errors(command: F) -> F:
    """Turn a store failure into a clear message and exit status 1."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (StoreUnavailable, SQLAlchemyError):
            raise click.ClickException("the token store cannot be reached; nothing was changed") from None

    return wrapper  # type: ignore[return-value]


def _service() -> LogoutService:
    return get_service()


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@logout_cli.command("revoke-token")
@click.argument("token")
@_store_errors
def revoke_token_command(token: str) -> None:
    """Revoke one token (an access token alone; a refresh token with its session)."""
    outcome = _service().revoke_presented(token.strip(), any_client=True)
    if outcome == "invalid":
        raise click.ClickException("not a token issued by this application (bad signature or malformed)")
    click.echo("revoked")


@logout_cli.command("revoke-session")
@click.argument("session_id")
@_store_errors
def revoke_session_command(session_id: str) -> None:
    """Revoke one session (token family): every token refreshed from one sign-in."""
    if not _service().revoke_family(session_id):
        raise click.ClickException(f"no live session {session_id!r}")
    click.echo(f"revoked session {session_id}")


@logout_cli.command("revoke-user")
@click.argument("user_id")
@_store_errors
def revoke_user_command(user_id: str) -> None:
    """Revoke every session and token of an end user."""
    _service().revoke_user(user_id)
    click.echo(f"revoked every token of user {user_id}")


@logout_cli.command("revoke-client")
@click.argument("client_id")
@_store_errors
def revoke_client_command(client_id: str) -> None:
    """Revoke every token of an API client."""
    service = _service()
    if service.store.get_client(client_id) is None:
        raise click.ClickException(f"no API client {client_id!r}")
    service.revoke_client(client_id)
    click.echo(f"revoked every token of client {client_id}")


@logout_cli.command("sessions")
@click.option("--user", "user_id", help="An end user's id.")
@click.option("--client", "client_id", help="An API client's id.")
@_store_errors
def sessions_command(user_id: str | None, client_id: str | None) -> None:
    """List the live sessions of a user or an API client."""
    if (user_id is None) == (client_id is None):
        raise click.UsageError("give exactly one of --user and --client")
    service = _service()
    if client_id is not None:
        sessions = service.live_sessions(client_id, client_id=client_id)
        owner = f"client {client_id}"
    else:
        assert user_id is not None
        sessions = service.live_sessions(user_id)
        owner = f"user {user_id}"
    if not sessions:
        click.echo(f"no live sessions for {owner}")
        return
    click.echo(f"{len(sessions)} live session(s) for {owner}:")
    for session in sessions:
        click.echo(f"  {session.family}  signed in {_when(session.created_at)}  until {_when(session.expires_at)}")


@logout_cli.command("create-client")
@click.argument("client_id")
@click.option("--secret", prompt=True, hide_input=True, confirmation_prompt=True, help="The client secret.")
@click.option("--cidr", "cidrs", multiple=True, help="Allowed network (repeat); none allows every address.")
@_store_errors
def create_client_command(client_id: str, secret: str, cidrs: tuple[str, ...]) -> None:
    """Create or replace an API client (its secret is stored hashed).

    Replacing the secret of an existing client revokes every token it holds.
    """
    try:
        _service().register_client(client_id, secret, cidrs)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(f"client {client_id} saved" + (f", allowed from {', '.join(cidrs)}" if cidrs else ""))


@logout_cli.command("delete-client")
@click.argument("client_id")
@_store_errors
def delete_client_command(client_id: str) -> None:
    """Delete an API client and revoke every token it holds."""
    if not _service().delete_client(client_id):
        raise click.ClickException(f"no API client {client_id!r}")
    click.echo(f"deleted client {client_id} and revoked every token of it")


keys_cli = AppGroup("keys", help="Signing keys kept in the store (LOGOUT_KEYRING = True).")
logout_cli.add_command(keys_cli)


def _keyring() -> LogoutService:
    service = _service()
    if not service.config.keyring:
        raise click.ClickException("signing keys are not kept in the store: set LOGOUT_KEYRING = True")
    return service


@keys_cli.command("rotate")
@_store_errors
def keys_rotate_command() -> None:
    """Create a new signing key; the old ones stay published until their tokens expire."""
    service = _keyring()
    kid = service.rotate_keys()
    click.echo(f"new signing key {kid}")
    _print_keys(service)


@keys_cli.command("list")
@_store_errors
def keys_list_command() -> None:
    """List the stored signing keys and how long each keeps verifying."""
    _print_keys(_keyring())


def _print_keys(service: LogoutService) -> None:
    try:
        stored = sorted(service.store.signing_keys(), key=lambda k: k.created_at)
    except Exception as exc:
        raise click.ClickException(f"the store could not be read: {exc.__class__.__name__}") from None
    active = [k for k in stored if k.retired_at is None]
    signer = max(active, key=lambda k: (k.created_at, k.kid)) if active else None
    for key in stored:
        if key is signer:
            status = "signs new tokens, published"
        elif key.retired_at is None:
            status = "published"
        elif key.retired_at + service.store.key_ttl > time.time():
            status = f"retired, published until {_when(key.retired_at + service.store.key_ttl)}"
        else:
            status = "retired, no longer published (purge removes it)"
        click.echo(f"  {key.kid}  {key.algorithm}  created {_when(key.created_at)}  {status}")


@logout_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
def status_command(as_json: bool) -> None:
    """Check the store from here: one sync, one push probe; exit 1 if the store cannot be read."""
    service = _service()
    try:
        service.replica.sync()
    except SQLAlchemyError as exc:
        service.replica._failed(exc)
    push = service.replica.probe_push() if service.replica.push else False
    status = service.status().as_dict()
    status["push"] = push  # this command's own probe; a worker reports its live connection
    if push:
        status["channel"] = service.replica.channel_name()
        status["push_error"] = None
    if as_json:
        click.echo(json.dumps(status, sort_keys=True))
    else:
        for key in sorted(status):
            click.echo(f"{key}: {status[key]}")
    if not status["fresh"]:
        raise SystemExit(1)


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
    service = _service()
    try:
        counts = service.store.purge(int(time.time()), token_grace=grace)
    except Exception as exc:
        raise click.ClickException(f"the store could not be purged: {exc.__class__.__name__}") from None
    click.echo(
        "purged {events} log entries, {tokens} token rows, {families} sessions, {seen} logout-token ids, "
        "{keys} signing keys".format(**counts)
    )
