"""``flask logout`` commands."""

from __future__ import annotations

from typing import Any

from flask import Flask

from flask_logout import LogoutManager, get_service

from .conftest import FAST_HASH, SECRET


def _app(database_uri: str) -> Flask:
    app = Flask(__name__)
    app.config.update(LOGOUT_SECRET_KEY=SECRET, LOGOUT_DATABASE_URI=database_uri, LOGOUT_CLIENT_SECRET_HASH=FAST_HASH)
    LogoutManager(app)
    return app


def test_purge_command(database_uri: str) -> None:
    app = _app(database_uri)
    service = get_service(app)
    pair = service.issue_tokens("u")
    service.revoke_family(pair.access.fid)
    result = app.test_cli_runner().invoke(args=["logout", "purge"])
    assert result.exit_code == 0, result.output
    assert result.output == "purged 0 log entries, 0 token rows, 0 sessions, 0 logout-token ids\n"
    rows: Any = service.store.lookup(pair.refresh.jti)
    assert rows is not None and rows.family_revoked
    bad = app.test_cli_runner().invoke(args=["logout", "purge", "--grace", "-1"])
    assert bad.exit_code == 2
    assert "Invalid value for '--grace'" in bad.output
    service.close()
