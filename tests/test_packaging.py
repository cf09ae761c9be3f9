"""The built wheel installs into a fresh virtual environment and works there."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SMOKE = """
import json, tempfile
from flask import Flask, jsonify
import flask_logout
from flask_logout import LogoutManager, current_token, get_service

app = Flask("smoke")
app.config.update(LOGOUT_SECRET_KEY="s" * 48, LOGOUT_PROTECTED_PATHS=["/api"],
                  LOGOUT_DATABASE_URI="sqlite:///" + tempfile.mkdtemp() + "/s.sqlite3",
                  LOGOUT_CLIENT_SECRET_HASH="pbkdf2:sha256:1000")
LogoutManager(app)
get_service(app).register_client("c", "s")

@app.get("/api/me")
def me():
    return jsonify({"client": current_token().cid})

client = app.test_client()
token = client.post("/auth/login", json={"client_id": "c", "client_secret": "s"}).get_json()["data"]["access_token"]
auth = {"Authorization": "Bearer " + token}
assert client.get("/api/me", headers=auth).get_json() == {"client": "c"}
assert client.post("/auth/logout", headers=auth).get_json()["data"]["message"] == "Successfully logged out"
assert client.get("/api/me", headers=auth).status_code == 401
print("smoke ok", flask_logout.__version__, flask_logout.__file__)
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out


def test_wheel_and_sdist_contents(dist: Path) -> None:
    from flask_logout import __version__

    wheel = next(dist.glob("flask_logout-*.whl"))
    sdist = next(dist.glob("flask_logout-*.tar.gz"))
    assert f"-{__version__}-" in wheel.name and sdist.name == f"flask_logout-{__version__}.tar.gz"
    names = zipfile.ZipFile(wheel).namelist()
    assert "flask_logout/py.typed" in names
    assert "flask_logout/dialects/session.py" in names
    assert not any(name.startswith(("tests/", "benchmarks/", "example_app/")) for name in names)
    assert any(name.endswith("entry_points.txt") for name in names)
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert f"flask_logout-{__version__}/flask_logout/py.typed" in members


def test_wheel_installs_in_a_fresh_virtualenv_and_works(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    wheel = next(dist.glob("flask_logout-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True, capture_output=True)
    result = subprocess.run([str(python), "-c", SMOKE], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.startswith("smoke ok")
    assert str(venv) in result.stdout  # the installed copy, not this checkout
