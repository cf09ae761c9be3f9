"""flask-logout: logging out that really logs out, for Flask and plain WSGI apps."""

from __future__ import annotations

from .cidr import CidrSet
from .config import ConfigError, LogoutConfig, load_config
from .errors import (
    AuthError,
    BadRequest,
    CrossOriginRequest,
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
from .helpers import (
    cookie_required,
    current_token,
    current_token_or_none,
    current_user,
    get_claims,
    get_current_user,
    get_identity,
    signed_out_reason,
    token_optional,
    token_required,
)
from .middleware import BearerMiddleware
from .proxies import client_ip
from .service import RESERVED_CLAIMS, LogoutService, TokenPair
from .store import SessionInfo, SQLStore, SsoLogin, make_engine
from .tokens import VerifiedToken

__version__ = "0.1.0"

__all__ = [
    "RESERVED_CLAIMS",
    "AuthError",
    "BadRequest",
    "BearerMiddleware",
    "CidrSet",
    "ConfigError",
    "CrossOriginRequest",
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
    "SessionInfo",
    "SsoLogin",
    "StoreUnavailable",
    "TokenExpired",
    "TokenPair",
    "TokenRevoked",
    "VerifiedToken",
    "__version__",
    "client_ip",
    "cookie_required",
    "current_token",
    "current_token_or_none",
    "current_user",
    "get_claims",
    "get_current_user",
    "get_identity",
    "get_service",
    "load_config",
    "make_engine",
    "signed_out_reason",
    "token_optional",
    "token_required",
]
