"""Which address a request comes from.

``X-Forwarded-For`` is written by whoever sent the request, so believing it
lets any client claim any address and walk through an IP whitelist. As in
werkzeug's ``ProxyFix``, the header is read only through a configured number
of trusted proxies: with ``trusted_proxies=1`` the last (right-most) value is
the one the single trusted proxy appended; anything further left was sent by
the client and is ignored. With ``trusted_proxies=0`` (the default) the header
is never read and ``REMOTE_ADDR`` is the client.

Do not combine this with ``ProxyFix(x_for=...)`` on the same app: ProxyFix has
already rewritten ``REMOTE_ADDR`` and the hop would be counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .cidr import CidrSet


def client_ip(
    environ: Mapping[str, Any],
    trusted_proxies: int = 0,
    trusted_proxy_cidrs: CidrSet | None = None,
) -> str | None:
    """The request's client address under the configured trust, or ``None``."""
    remote = environ.get("REMOTE_ADDR")
    if not trusted_proxies:
        return remote
    if trusted_proxy_cidrs is not None and (remote is None or remote not in trusted_proxy_cidrs):
        return remote
    header = environ.get("HTTP_X_FORWARDED_FOR")
    if not header:
        return remote
    values = [value.strip() for value in header.split(",")]
    if len(values) < trusted_proxies:
        # Fewer hops than proxies configured: the chain is not what the
        # deployment says it is, so trust none of it.
        return remote
    return values[-trusted_proxies] or None
