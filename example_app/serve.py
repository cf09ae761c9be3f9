"""Serve the example app on a free loopback port; print the port, then serve.

Settings come from the environment (``FLASK_LOGOUT_*``), as in production.
Used by the multi-process tests and the benchmarks.
"""

from __future__ import annotations

import sys

from werkzeug.serving import make_server

from example_app import create_app


def main() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app = create_app()
    server = make_server("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0, app, threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
