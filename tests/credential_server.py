"""A small application whose users and password hashes live in the store's database.

Served by ``python -m tests.credential_server`` (prints its port, then
serves), so that two real processes share the users table and the token
store: the multi-process tests of docs/password-change.md. Settings come
from the environment (``FLASK_LOGOUT_*``, ``FLASK_SECRET_KEY``).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from flask import Flask, jsonify, request
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.serving import make_server

from flask_logout import LogoutManager, current_token, get_service

HASH_METHOD = "pbkdf2:sha256:1000"  # real hashing, cheap enough for tests

metadata = sa.MetaData()
users = sa.Table(
    "app_users",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("email", sa.String(200), unique=True, nullable=False),
    sa.Column("password_hash", sa.String(300), nullable=False),
)


def seed(database_uri: str, email: str, user_id: str, password: str) -> None:
    """Create the users table (if needed) and one user."""
    engine = sa.create_engine(database_uri)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(users.insert().values(id=user_id, email=email, password_hash=hash_password(password)))
    engine.dispose()


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=HASH_METHOD)


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(LOGOUT_DIALECTS=["session"], LOGOUT_PROTECTED_PATHS=["/api"])
    app.config.from_prefixed_env()
    engine = sa.create_engine(app.config["LOGOUT_DATABASE_URI"])
    manager = LogoutManager(app)

    def row_by(column: Any, value: str) -> Any:
        with engine.connect() as conn:
            return conn.execute(sa.select(users).where(column == value)).first()

    @manager.credentials_loader
    def check(email: str, password: str) -> dict[str, Any] | None:
        row = row_by(users.c.email, email)
        if row is None or not check_password_hash(row.password_hash, password):
            return None
        return {"userId": row.id, "email": row.email}

    @manager.user_loader
    def load(user_id: str) -> dict[str, Any] | None:
        row = row_by(users.c.id, user_id)
        return None if row is None else {"userId": row.id, "email": row.email}

    @manager.credential_version_loader
    def credential_version(user_id: str) -> str | None:
        row = row_by(users.c.id, user_id)
        return None if row is None else str(row.password_hash)  # changes with every new password (new salt)

    @app.get("/api/me")
    def me() -> Any:
        token = current_token()
        assert token is not None
        return jsonify({"sub": token.sub})

    @app.post("/api/password")
    def change_password() -> Any:
        token = current_token()
        assert token is not None
        password = (request.get_json(silent=True) or {}).get("password")
        if not isinstance(password, str) or len(password) < 8:
            return jsonify({"data": None, "code": 40001, "msg": "Password too short"})
        with engine.begin() as conn:
            conn.execute(users.update().where(users.c.id == token.sub).values(password_hash=hash_password(password)))
        get_service().credentials_changed(token.sub)  # every session of the user ends, in every process
        return jsonify({"data": None, "code": 0, "msg": ""})

    return app


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, create_app(), threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
