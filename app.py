"""Entry point: `python app.py [COMMAND]`, and `server` for a WSGI server (gunicorn app:server)."""

from __future__ import annotations

import sys
from typing import Any


def __getattr__(name: str) -> Any:
    # Built on first use, not at import, so importing app.py connects nothing.
    if name == "server":
        from dashboard.webapp import create_app

        return create_app().server
    raise AttributeError(name)


if __name__ == "__main__":
    from dashboard.cli import main

    sys.exit(main())
