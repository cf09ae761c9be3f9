"""Property tests (hypothesis): parsers and round trips hold for any input."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flask_logout import AuthError, BearerMiddleware, CidrSet, LogoutService
from flask_logout.config import CookieSettings
from flask_logout.cookies import auth_cookie_headers, clear_cookie_headers

from .conftest import FAST_HASH, SECRET

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogoutService]:
    path = tmp_path_factory.mktemp("props") / "s.sqlite3"
    service = LogoutService.from_settings(
        {
            "LOGOUT_SECRET_KEY": SECRET,
            "LOGOUT_DATABASE_URI": f"sqlite:///{path}",
            "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
        }
    )
    yield service
    service.close()


# WSGI servers hand headers over as latin-1 text: every byte value can occur.
header_text = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=300),
    st.builds(lambda t: "Bearer " + t, st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255))),
    st.builds(lambda n: "Bearer " + "A" * n, st.integers(min_value=0, max_value=20_000)),
    st.builds(lambda a, b, c: f"Bearer {a}.{b}.{c}", *[st.text("ABCxyz09-_=+/", max_size=40)] * 3),
)


@SETTINGS
@given(header=header_text)
def test_any_authorization_header_is_a_clean_refusal(service: LogoutService, header: str) -> None:
    with pytest.raises(AuthError) as refused:
        service.authenticate({"HTTP_AUTHORIZATION": header, "REMOTE_ADDR": "127.0.0.1"})
    assert refused.value.status == 401
    assert refused.value.message in ("Authorization header required", "Invalid token")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=header_text)
def test_the_middleware_answers_401_json_for_any_header(service: LogoutService, header: str) -> None:
    captured: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:  # never reached
        raise AssertionError("a bad header reached the application")

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"] = status

    environ = {"PATH_INFO": "/api/x", "REQUEST_METHOD": "GET", "HTTP_AUTHORIZATION": header, "REMOTE_ADDR": "::1"}
    body = b"".join(BearerMiddleware(app, service, ["/api"])(environ, start_response))
    assert captured["status"] == "401 Unauthorized"
    assert json.loads(body)["error"]["message"] in ("Authorization header required", "Invalid token")


def _v4_network() -> st.SearchStrategy[Any]:
    return st.builds(
        lambda addr, prefix: ipaddress.ip_network((addr, prefix), strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
    )


def _v6_network() -> st.SearchStrategy[Any]:
    return st.builds(
        lambda addr, prefix: ipaddress.ip_network((addr, prefix), strict=False),
        st.integers(0, 2**128 - 1),
        st.integers(0, 128),
    )


def _mapped_network() -> st.SearchStrategy[Any]:
    return st.builds(
        lambda addr, prefix: ipaddress.ip_network(((0xFFFF << 32) | addr, 96 + prefix), strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
    )


def _reference(address: str, networks: list[Any]) -> bool:
    """The ipaddress module, with IPv4-mapped IPv6 addresses and ranges read as IPv4."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for network in networks:
        if network.version == 6 and network.subnet_of(ipaddress.ip_network("::ffff:0:0/96")):
            start = network.network_address.ipv4_mapped
            network = ipaddress.ip_network(f"{start}/{network.prefixlen - 96}")
        if ip.version == network.version and ip in network:
            return True
    return False


addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
    st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n))),
    st.integers(0, 2**32 - 1).map(lambda n: f"::ffff:{ipaddress.IPv4Address(n)}"),
)


@settings(max_examples=500, deadline=None)
@given(
    networks=st.lists(st.one_of(_v4_network(), _v6_network(), _mapped_network()), max_size=12),
    probes=st.lists(addresses, min_size=1, max_size=20),
)
def test_cidr_matching_agrees_with_ipaddress(networks: list[Any], probes: list[str]) -> None:
    cidrs = CidrSet(str(n) for n in networks)
    for address in probes + [str(n.network_address) for n in networks] + [str(n.broadcast_address) for n in networks]:
        assert (address in cidrs) is _reference(address, networks), (address, networks)


cookie_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=20
)
cookie_settings = st.builds(
    lambda session, refresh, domain, path, secure, samesite: CookieSettings(
        session_name=session,
        refresh_name=refresh + "_r",
        domain=domain,
        session_domain=domain,
        path=path,
        secure=secure or samesite == "None",
        samesite=samesite,
    ),
    cookie_names,
    cookie_names,
    st.one_of(st.none(), st.sampled_from(["example.com", "app.example.org", "localhost"])),
    st.sampled_from(["/", "/app", "/a/b"]),
    st.booleans(),
    st.sampled_from(["Strict", "Lax", "None"]),
)


def _parsed(header: str) -> Any:
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    (morsel,) = jar.values()
    return morsel


@settings(max_examples=300, deadline=None)
@given(
    config=cookie_settings, session=st.text("ABCabc0123456789-_.", min_size=1), refresh=st.text("xyz09-_.", min_size=1)
)
def test_cookies_are_cleared_with_the_attributes_they_were_set_with(
    config: CookieSettings, session: str, refresh: str
) -> None:
    set_headers = auth_cookie_headers(config, session, refresh, session_max_age=60, refresh_max_age=600)
    cleared = clear_cookie_headers(config)
    for (_, made), (_, gone) in zip(set_headers, cleared[:2], strict=True):
        a, b = _parsed(made), _parsed(gone)
        assert a.key == b.key
        assert (a["path"], a["domain"], a["secure"], a["samesite"]) == (
            b["path"],
            b["domain"],
            b["secure"],
            b["samesite"],
        )
        assert a["httponly"] and b["httponly"]
        assert b.value == "" and b["max-age"] == "0"
    assert [_parsed(h).value for _, h in set_headers] == [session, refresh]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    subject=st.text(min_size=1, max_size=60),
    client=st.one_of(
        st.none(),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=60),
    ),
)
def test_token_round_trip(service: LogoutService, subject: str, client: str | None) -> None:
    if client is not None:
        service.register_client(client, "secret")  # a client token needs its client (a NUL id cannot be one)
    pair = service.issue_tokens(subject, client_id=client)
    access, _ = service.verify(pair.access_token)
    refresh, _ = service.verify(pair.refresh_token, expected_type="refresh")
    assert (access.sub, access.cid, access.typ) == (subject, client, "access")
    assert (refresh.sub, refresh.cid, refresh.fid) == (subject, client, access.fid)
    assert access.claims == pair.access.claims


# Cookie headers built from the characters that matter to werkzeug's parse
# (separators, blanks, quotes, '=') around the names DS and DSR.
cookie_piece = st.sampled_from(["DS", "DSR", "XDS", "=", ";", "; ", " ", "\t", '"', "\\", "a", "tok", "x=1", "DS=t"])
blanks = st.sampled_from(["", "", " ", "  ", "\t"])
cookie_segment = st.builds(
    lambda lead, key, value: lead + key + value,
    blanks,
    st.sampled_from(["DS", "DSR", "XDS", "a", ""]),
    st.one_of(
        st.just(""),
        st.builds(
            lambda b1, b2, v: b1 + "=" + b2 + v, blanks, blanks, st.sampled_from(["t", "u", "", "a b", '"q"', "DS"])
        ),
    ),
)
cookie_header = st.one_of(
    st.lists(cookie_piece, max_size=14).map("".join),
    st.builds(lambda parts, sep: sep.join(parts), st.lists(cookie_segment, max_size=5), st.sampled_from(["; ", ";"])),
)


@settings(max_examples=2000, deadline=None)
@given(header=cookie_header)
@example(header="a;  DS=u; DS=t")  # a key after two blanks is still the first DS
@example(header="\tDS=u; DS=t")
@example(header="DS; DS=t")  # a key without a value: werkzeug reads DS as ""
@example(header="DS ; DS=t")
@example(header="DS = u; DS=t")
@example(header='q="x; DS=u"; DS=t')  # inside a quoted value
@example(header="DSR=r; XDS=x; a=DS; DS=t")  # other keys, a value: the answer is t
def test_the_session_cookie_found_without_parsing_is_the_one_werkzeug_reads(header: str) -> None:
    """``cookie_value_start`` answers werkzeug's first ``DS`` or -1, never another cookie.

    The caller uses the value only when it is a whole token it knows (no
    blanks), so that is what must agree; -1 sends the header to the parser.
    """
    from werkzeug.http import parse_cookie

    from flask_logout.cookies import cookie_value_start

    start = cookie_value_start(header, "DS")
    if start < 0:
        return
    end = header.find(";", start)
    value = header[start : end if end >= 0 else len(header)]
    if value and " " not in value and "\t" not in value:
        assert parse_cookie(header).get("DS") == value
