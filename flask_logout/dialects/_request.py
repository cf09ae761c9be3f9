"""Reading request bodies safely: shared by every dialect.

Whatever a client sends must end in a 4xx in the dialect's envelope, never a
500: a body nested deeply enough makes ``json.loads`` raise
``RecursionError`` (which ``get_json(silent=True)`` does not catch), and a
JSON string may hold a lone surrogate (``"\\ud800"``) that no UTF-8 encoder,
password hash or database driver accepts, or a NUL that PostgreSQL text
cannot hold.
"""

from __future__ import annotations

from typing import Any

from flask import request

from ..service import is_text

__all__ = ["is_text", "json_body"]


def json_body() -> Any:
    """The body parsed as JSON, whatever the Content-Type says; ``None`` if it is not JSON."""
    try:
        return request.get_json(force=True, silent=True)
    except RecursionError:
        return None
