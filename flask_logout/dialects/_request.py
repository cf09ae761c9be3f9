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
from werkzeug.exceptions import RequestEntityTooLarge

from ..service import is_text

__all__ = ["MAX_BODY_BYTES", "body_too_large", "is_text", "json_body"]

#: The largest request body any endpoint of the library reads. Every body
#: it takes is a few hundred bytes (a token is under 1 KB).
MAX_BODY_BYTES = 16 * 1024


def body_too_large() -> bool:
    """Read the body now, at most :data:`MAX_BODY_BYTES` of it; True if it is longer.

    Called before each view of every dialect. A ``Content-Length`` over the
    limit is refused unread; a chunked body (no ``Content-Length``) is read
    until it passes the limit and no further. The body read is cached, so
    ``get_json`` and ``form`` parse it from memory afterwards.
    """
    # One byte over the limit: werkzeug stops a streamed body at the limit
    # without an error, so reading one more byte is how to see it goes on.
    request.max_content_length = MAX_BODY_BYTES + 1
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        return True
    try:
        return len(request.get_data(cache=True)) > MAX_BODY_BYTES
    except RequestEntityTooLarge:
        return True


def json_body() -> Any:
    """The body parsed as JSON, whatever the Content-Type says; ``None`` if it is not JSON."""
    try:
        return request.get_json(force=True, silent=True)
    except RecursionError:
        return None
