"""The documented configuration matches the code."""

from __future__ import annotations

import pathlib

import pytest

from flask_logout.config import SETTINGS

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("document", ["README.md", "docs/configuration.md"])
def test_every_setting_is_documented(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    for setting in SETTINGS:
        assert f"| `{setting.name}` |" in text, f"{setting.name} missing from {document}"
