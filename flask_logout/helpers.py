"""Functions Flask views call."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import request

from .errors import LogoutError
from .extension import get_service
from .service import ENVIRON_TOKEN
from .tokens import VerifiedToken

F = TypeVar("F", bound=Callable[..., Any])


try:  # Flask's request-context variable: reading it directly skips the proxy
    from flask.globals import _cv_request
except ImportError:  # pragma: no cover (a Flask without it: the proxy below)
    _cv_request = None  # type: ignore[assignment]


def current_token() -> VerifiedToken | None:
    """The token the middleware or :func:`token_required` verified for this request."""
    # ``request.environ`` through Flask's proxy costs about as much as the
    # middleware's whole hot path (~1.3 us); the context variable it reads
    # is one call away.
    context = _cv_request.get(None) if _cv_request is not None else None
    environ = context.request.environ if context is not None else request.environ
    return cast("VerifiedToken | None", environ.get(ENVIRON_TOKEN))


def token_required(view: F) -> F:
    """Require a live access token on one view (same checks and answers as the middleware).

    Errors are answered in the client-API envelope.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if request.environ.get(ENVIRON_TOKEN) is None:
            from .dialects.client_api import error_response

            try:
                verified = get_service().authenticate(request.environ)
            except LogoutError as error:
                return error_response(error)
            request.environ[ENVIRON_TOKEN] = verified
            request.environ["flask_logout.claims"] = verified.claims
        return view(*args, **kwargs)

    return cast(F, wrapper)
