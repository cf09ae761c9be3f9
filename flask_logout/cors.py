"""CORS for the ``descope`` endpoints and the protected paths (``LOGOUT_CORS_ORIGINS``).

A single-page app on another origin (``https://app.example.com`` calling
``https://api.example.com``) runs Descope's browser SDK, which sends every
request with ``credentials: 'include'``, ``Authorization``, JSON and
``x-descope-*`` headers: each one needs a CORS preflight, and each answer an
``Access-Control-Allow-Origin`` naming the page's exact origin with
``Access-Control-Allow-Credentials: true``.

Flask answers go through Flask-CORS (:func:`enable`); in a Flask app the
:class:`~flask_logout.middleware.BearerMiddleware`'s 401, 403 and 503
refusals go through Flask too. Around a plain WSGI app the middleware answers
them itself and adds the same headers with :func:`refusal_headers`: without
them the page's script could not read the refusal (it would see a network
error instead of a 401). Every answer on these paths says ``Vary: Origin``,
granted or not, so that no cache serves one origin's answer to another.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .config import LogoutConfig

#: What the SDKs send: ``Authorization``, JSON, and their ``x-descope-*`` headers.
ALLOW_HEADERS = ("authorization", "content-type", re.compile(r"x-descope-[a-z0-9-]+\Z", re.IGNORECASE))
ALLOW_METHODS = ("GET", "POST", "DELETE", "OPTIONS")
#: Readable by the page: the SDK reads ``Retry-After`` of a 429.
EXPOSE_HEADERS = ("Retry-After",)
#: How long a browser may cache a preflight answer.
MAX_AGE = 600


def _exact(origin: str) -> re.Pattern[str]:
    # Flask-CORS would read an origin holding regex characters (an IPv6
    # literal's brackets) as a pattern: compile each as an exact match instead.
    return re.compile(re.escape(origin) + r"\Z", re.IGNORECASE)


def resource_patterns(config: LogoutConfig) -> list[str]:
    """Path patterns CORS applies to: the descope endpoints and the protected paths."""
    patterns = []
    if "descope" in config.dialects:
        patterns.append(re.escape(config.url_prefixes.get("descope", "")) + r"/v[12]/.*")
    for path in config.protected_paths:
        patterns.append(re.escape(path.rstrip("/")) + r"(/.*)?\Z")
    return patterns


def enable(app: Any, config: LogoutConfig) -> None:
    """Register Flask-CORS on ``app`` for :func:`resource_patterns`, if origins are configured."""
    if not config.cors_origins:
        return
    patterns = resource_patterns(config)
    if not patterns:
        return
    from flask_cors import CORS

    CORS(
        app,
        resources={pattern: {} for pattern in patterns},
        origins=[_exact(origin) for origin in sorted(config.cors_origins)],
        supports_credentials=True,
        allow_headers=list(ALLOW_HEADERS),
        methods=list(ALLOW_METHODS),
        expose_headers=list(EXPOSE_HEADERS),
        max_age=MAX_AGE,
        vary_header=True,
    )
    from flask import request

    compiled = [re.compile(pattern) for pattern in patterns]

    def vary_on_origin(response: Any) -> Any:
        # Flask-CORS says Vary: Origin only where it grants an origin.
        if any(pattern.match(request.path) for pattern in compiled):
            response.vary.add("Origin")
        return response

    app.after_request(vary_on_origin)


def refusal_headers(environ: Mapping[str, Any], config: LogoutConfig) -> list[tuple[str, str]]:
    """The CORS headers of an answer made outside Flask (the middleware's refusals)."""
    if not config.cors_origins:
        return []
    origin = environ.get("HTTP_ORIGIN")
    headers = [("Vary", "Origin")]
    if origin and origin.lower() in config.cors_origins:
        headers += [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Expose-Headers", ", ".join(EXPOSE_HEADERS)),
        ]
    return headers
