"""Rewrite the configuration table in README.md and docs/configuration.md from the code.

Run after adding or changing a setting: ``.venv/bin/python scripts/update_settings_tables.py``.
tests/test_docs.py fails until the documents match.
"""

from __future__ import annotations

import pathlib
import re

from flask_logout.config import settings_table

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE = re.compile(r"^\| Setting \| Type \| Default \| Meaning \|\n(?:\|.*\n?)*", re.MULTILINE)

for name in ("README.md", "docs/configuration.md"):
    path = ROOT / name
    text = path.read_text(encoding="utf-8")
    new, count = TABLE.subn(settings_table() + "\n", text, count=1)
    if count != 1:
        raise SystemExit(f"{name}: no settings table found")
    path.write_text(new, encoding="utf-8")
    print(f"updated {name}")
