"""A store made by the previous release gains the new family columns at start-up."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from flask_logout import LogoutService

from .conftest import FAST_HASH, SECRET


def test_old_families_table_gains_user_agent_and_ip(database_uri: str) -> None:
    engine = sa.create_engine(database_uri)
    with engine.begin() as conn:  # the families table as the previous release made it
        conn.execute(
            sa.text(
                "CREATE TABLE logout_families (family VARCHAR(64) PRIMARY KEY, subject VARCHAR(255) NOT NULL, "
                "created_at FLOAT NOT NULL, revoked_at FLOAT, provider VARCHAR(64), provider_sid VARCHAR(255), "
                "provider_sub VARCHAR(255), id_token TEXT)"
            )
        )
        conn.execute(sa.text("INSERT INTO logout_families (family, subject, created_at) VALUES ('old', 'user:u', 1)"))
    engine.dispose()
    settings: dict[str, Any] = {
        "LOGOUT_SECRET_KEY": SECRET,
        "LOGOUT_DATABASE_URI": database_uri,
        "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
    }
    service = LogoutService.from_settings(settings)
    try:
        service.issue_tokens("u", user_agent="Agent/1.0", ip="198.51.100.4")
        [info] = service.live_sessions("u")
        assert (info.user_agent, info.ip) == ("Agent/1.0", "198.51.100.4")
        LogoutService.from_settings(settings).close()  # a second start finds them there
    finally:
        service.close()
