"""The Flask quick starts pass ``mypy --strict`` as written, and the people one answers as documented."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUICKSTART = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", QUICKSTART, re.S)
APP = next(b for b in BLOCKS if 'LOGOUT_PROTECTED_PATHS"] = ["/api"]' in b)
ONE_VIEW = next(b for b in BLOCKS if "def latest_report" in b)
USERS_APP = next(b for b in BLOCKS if "LOGOUT_DIALECTS" in b)


def test_the_flask_quick_starts_pass_mypy_strict(tmp_path: pathlib.Path) -> None:
    (tmp_path / "app.py").write_text(APP + "\n\n" + ONE_VIEW, encoding="utf-8")
    (tmp_path / "users_app.py").write_text(USERS_APP, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "app.py", "users_app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        # An editable install is an import hook that mypy does not follow: point it at the checkout.
        env={**os.environ, "MYPYPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found in 2 source files")


def test_the_people_quick_start_answers_as_documented(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_SECRET_KEY", "k" * 48)
    namespace: dict[str, Any] = {"__name__": "users_app"}
    monkeypatch.chdir(tmp_path)
    exec(compile(USERS_APP, "users_app.py", "exec"), namespace)  # noqa: S102 (the documented code)
    app = namespace["app"]
    app.instance_path = str(tmp_path / "instance")
    client = app.test_client()
    signed_in = client.post("/session/token", json={"email": "ada@example.com", "password": "correct horse"})
    token = signed_in.get_json()["data"]["token"]
    assert signed_in.get_json()["data"]["user"] == {"name": "Ada", "userId": "u-1"}
    me = client.get("/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.data == b'{"claims":["exp","fid","gen","iat","jti","sub","typ"],"user_id":"u-1"}\n'
    out = client.delete("/session/token", json={"refresh_token": token["refresh_token"]})
    assert out.data == b'{"code":0,"data":null,"msg":""}\n'
    after = client.get("/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert (after.status_code, after.data) == (
        401,
        b'{"error":{"name":"UnauthorizedError","code":"UNAUTHORIZED","message":"Invalid token"}}',
    )
    app.extensions["flask_logout"].service.close()
