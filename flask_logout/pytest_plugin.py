"""pytest plugin: the ``logout_tokens`` fixture.

Registered through the ``pytest11`` entry point when flask-logout is
installed. It needs an ``app`` fixture (your Flask application with
``LogoutManager`` initialised), like pytest-flask's.
"""

from __future__ import annotations

from typing import Any

import pytest

from .testing import TokenFactory


@pytest.fixture
def logout_tokens(request: pytest.FixtureRequest) -> TokenFactory:
    """A :class:`~flask_logout.testing.TokenFactory` for the test's ``app`` fixture."""
    try:
        app: Any = request.getfixturevalue("app")
    except pytest.FixtureLookupError:
        raise pytest.UsageError("the logout_tokens fixture needs an 'app' fixture returning your Flask app") from None
    return TokenFactory(app)
