"""Health of this process's view of the store, for load balancers and monitoring.

:class:`HealthApp` is a WSGI application a plain WSGI deployment can mount
(with werkzeug's ``DispatcherMiddleware``, say); the Flask extension serves
the same answer at ``LOGOUT_HEALTH_PATH`` when that is set. Both answer
``200`` while the replica is fresh and ``503`` once it is stale (no sync for
``LOGOUT_MAX_STALENESS``), with :meth:`~flask_logout.replica.ReplicaStatus.as_dict`
as the JSON body. Nothing in it is secret: no token, no SQL, no database
address, only exception class names.

Asking starts the replica's sync threads if this process has not yet served
a protected request, so a freshly started worker reports its real state.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .service import LogoutService


def health(service: LogoutService) -> tuple[int, dict[str, Any]]:
    """The status code and body of a health answer."""
    service.replica.ensure_running()
    status = service.status()
    return (200 if status.fresh else 503), status.as_dict()


class HealthApp:
    """A WSGI application answering the replica's health: 200 when fresh, 503 when stale."""

    def __init__(self, service: LogoutService) -> None:
        self.service = service

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        code, body = health(self.service)
        payload = json.dumps(body, sort_keys=True).encode()
        start_response(
            "200 OK" if code == 200 else "503 Service Unavailable",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [payload]


def flask_view(service: LogoutService) -> Callable[[], Any]:
    """A Flask view function with the same answer (registered for ``LOGOUT_HEALTH_PATH``)."""

    def logout_health() -> Any:
        from flask import jsonify

        code, body = health(service)
        response = jsonify(body)
        response.status_code = code
        response.headers["Cache-Control"] = "no-store"
        return response

    return logout_health
