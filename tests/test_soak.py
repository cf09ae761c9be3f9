"""A short soak (the CI version of ``make soak``): gunicorn, mixed traffic, every revoked token replayed."""

from __future__ import annotations

import pytest


@pytest.mark.postgres
def test_short_soak_has_no_5xx_and_accepts_no_revoked_token(postgres_uri: str) -> None:
    from benchmarks.soak import run

    result = run(8.0)
    assert result["server_errors"] == 0, result
    assert result["revoked_tokens"] > 0 and result["replayed"] >= result["revoked_tokens"], result
    assert result["wrongly_accepted"] == 0, result
    assert result["requests"] > 100, result
