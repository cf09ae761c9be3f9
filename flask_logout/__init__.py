"""flask-logout: logging out that really logs out, for Flask and plain WSGI apps."""

from __future__ import annotations

from .cidr import CidrSet
from .config import ConfigError, LogoutConfig, load_config
from .errors import (
    AuthError,
    BadRequest,
    InvalidCredentials,
    InvalidToken,
    IPNotAuthorized,
    LogoutError,
    MissingAuthorization,
    ReuseDetected,
    StoreUnavailable,
    TokenExpired,
    TokenRevoked,
)
from .extension import LogoutManager, get_service
from .helpers import current_token, token_required
from .middleware import BearerMiddleware
from .proxies import client_ip
from .service import LogoutService, TokenPair
from .store import SQLStore, SsoLogin, make_engine
from .tokens import VerifiedToken

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BadRequest",
    "BearerMiddleware",
    "CidrSet",
    "ConfigError",
    "IPNotAuthorized",
    "InvalidCredentials",
    "InvalidToken",
    "LogoutConfig",
    "LogoutError",
    "LogoutManager",
    "LogoutService",
    "MissingAuthorization",
    "ReuseDetected",
    "SQLStore",
    "SsoLogin",
    "StoreUnavailable",
    "TokenExpired",
    "TokenPair",
    "TokenRevoked",
    "VerifiedToken",
    "__version__",
    "client_ip",
    "current_token",
    "get_service",
    "load_config",
    "make_engine",
    "token_required",
]
