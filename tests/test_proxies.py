"""Client address resolution: X-Forwarded-For only through trusted proxies."""

from __future__ import annotations

from typing import Any

import pytest

from flask_logout import CidrSet, client_ip

from .conftest import FORBIDDEN, bearer, build_app


@pytest.mark.parametrize(
    ("remote", "xff", "trusted", "expected"),
    [
        ("10.0.0.1", None, 0, "10.0.0.1"),
        ("10.0.0.1", "203.0.113.9", 0, "10.0.0.1"),  # untrusted header ignored
        ("10.0.0.1", "203.0.113.9", 1, "203.0.113.9"),
        ("10.0.0.1", "1.2.3.4, 203.0.113.9", 1, "203.0.113.9"),  # client-forged left part ignored
        ("10.0.0.1", "1.2.3.4, 203.0.113.9", 2, "1.2.3.4"),
        ("10.0.0.1", "203.0.113.9", 2, "10.0.0.1"),  # fewer hops than proxies: trust none
        ("10.0.0.1", "", 1, "10.0.0.1"),
        ("10.0.0.1", "1.2.3.4,   ", 1, None),  # an empty hop is no address
    ],
)
def test_client_ip(remote: str, xff: str | None, trusted: int, expected: str | None) -> None:
    environ = {"REMOTE_ADDR": remote}
    if xff is not None:
        environ["HTTP_X_FORWARDED_FOR"] = xff
    assert client_ip(environ, trusted) == expected


def test_proxy_cidrs_limit_who_may_forward() -> None:
    proxies = CidrSet(["10.0.0.0/8"])
    forwarded = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    direct = {"REMOTE_ADDR": "198.51.100.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert client_ip(forwarded, 1, proxies) == "203.0.113.9"
    assert client_ip(direct, 1, proxies) == "198.51.100.1"


def _locked_login(client: Any, **environ: Any) -> Any:
    return client.post(
        "/auth/login",
        json={"client_id": "locked-client", "client_secret": "locked-secret"},
        environ_base=environ,
    )


def test_spoofed_forwarded_for_does_not_pass_the_whitelist(database_uri: str) -> None:
    client = build_app(database_uri).test_client()  # no trusted proxies
    spoofed = _locked_login(client, REMOTE_ADDR="198.51.100.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert (spoofed.status_code, spoofed.get_json()) == (403, FORBIDDEN)


def test_forwarded_for_through_one_trusted_proxy(database_uri: str) -> None:
    client = build_app(database_uri, LOGOUT_TRUSTED_PROXIES=1).test_client()
    via_proxy = _locked_login(client, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert via_proxy.status_code == 200
    token = via_proxy.get_json()["data"]["access_token"]
    ok = client.get(
        "/api/me",
        headers=bearer(token),
        environ_base={"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "203.0.113.5"},
    )
    assert ok.status_code == 200
    # The client prepends a whitelisted address; the proxy appends the real one.
    forged = client.get(
        "/api/me",
        headers=bearer(token),
        environ_base={"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "203.0.113.5, 198.51.100.1"},
    )
    assert (forged.status_code, forged.get_json()) == (403, FORBIDDEN)


def test_forwarded_for_only_from_trusted_proxy_addresses(database_uri: str) -> None:
    client = build_app(database_uri, LOGOUT_TRUSTED_PROXIES=1, LOGOUT_TRUSTED_PROXY_CIDRS=["10.0.0.0/8"]).test_client()
    from_proxy = _locked_login(client, REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert from_proxy.status_code == 200
    not_proxy = _locked_login(client, REMOTE_ADDR="198.51.100.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert (not_proxy.status_code, not_proxy.get_json()) == (403, FORBIDDEN)
