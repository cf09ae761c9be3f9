"""Sphinx configuration for the flask-logout documentation.

Build with ``make docs`` (warnings are errors). The configuration reference
page, ``_generated/settings.md``, is written here at the start of every build
from ``flask_logout.config.settings_table()``, so it always matches the code.
"""

from __future__ import annotations

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(DOCS))  # the repository root, for `import flask_logout`

import flask_logout  # noqa: E402
from flask_logout.config import settings_table  # noqa: E402

# -- Project -----------------------------------------------------------------

project = "flask-logout"
author = "the flask-logout authors"
copyright = "the flask-logout authors"  # noqa: A001 (Sphinx's name)
release = flask_logout.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "images", "Thumbs.db", ".DS_Store"]

myst_heading_anchors = 3

autodoc_typehints = "description"
autodoc_member_order = "bysource"

# -- HTML --------------------------------------------------------------------

html_theme = "alabaster"
html_title = f"flask-logout {release}"
html_theme_options = {
    "description": "Logging out that really logs out, for Flask and WSGI apps.",
    "fixed_sidebar": True,
    "page_width": "1200px",
}

# -- Generated pages ---------------------------------------------------------


def _write_if_changed(path: str, text: str) -> None:
    """Write ``text`` unless the file already holds it (keeps incremental builds quick)."""
    try:
        with open(path, encoding="utf-8") as existing:
            if existing.read() == text:
                return
    except FileNotFoundError:
        pass
    with open(path, "w", encoding="utf-8") as new:
        new.write(text)


def _generate_settings_page() -> None:
    folder = os.path.join(DOCS, "_generated")
    os.makedirs(folder, exist_ok=True)
    text = (
        "# Configuration reference (generated)\n\n"
        "This page is generated from `SETTINGS` in `flask_logout/config.py` at build time; "
        "do not edit it by hand.\n\n" + settings_table() + "\n"
    )
    _write_if_changed(os.path.join(folder, "settings.md"), text)


_generate_settings_page()
