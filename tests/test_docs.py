"""The documented configuration matches the code."""

from __future__ import annotations

import pathlib

import pytest

from flask_logout.config import SETTINGS, settings_table

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("document", ["README.md", "docs/configuration.md"])
def test_settings_table_is_current(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    assert settings_table() in text, f"run scripts/update_settings_tables.py to refresh {document}"
    for setting in SETTINGS:
        assert f"| `{setting.name}` |" in text


def test_every_setting_the_code_reads_is_in_the_reference() -> None:
    import re

    from flask_logout.config import KNOWN_SETTINGS

    source = (ROOT / "flask_logout" / "config.py").read_text(encoding="utf-8")
    read = set(re.findall(r'"(LOGOUT_[A-Z_]+)"', source))
    assert read - KNOWN_SETTINGS == set()
