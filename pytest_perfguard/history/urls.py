"""Turning `--perf-db` values into SQLAlchemy URLs, and hiding passwords in any text.

:func:`mask_secrets` is the one place credentials are hidden: run arguments before they
are stored, messages before they are printed, errors before they are raised.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from pytest_perfguard.history.errors import HistoryError

DEFAULT_DB_PATH = Path(".perfguard") / "history.db"

# `postgresql://` would pick psycopg2, which is not our dependency: psycopg 3 is.
_PG_SCHEMES = ("postgresql", "postgres")
# A URL's userinfo password, even in a URL SQLAlchemy cannot parse: `scheme://user:pw@`.
_USERINFO_RE = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>\S*)@")
# `password=...` as a URL query parameter (`?password=pw&sslmode=require`), in a libpq
# connection string (`host=h password='p w' dbname=d`; quoted values may hold spaces) or
# as a variable (`PGPASSWORD=pw`, `db_password=pw`).
_KEYWORD_RE = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_])(?:[A-Za-z_]*pass(?:word|wd)|pwd)\s*=\s*)"
    # Unquoted, a value ends at a blank, `&`, `;`, `#` or a colon before a blank (the
    # end of `url: reason` in a message).
    r"(?P<pw>'(?:[^'\\]|\\.)*'?|\"[^\"]*\"?|(?:[^\s&;#'\":]|:(?=\S))+)",
    re.IGNORECASE,
)


# `host=db port=5432 ...`: libpq's own syntax, which SQLAlchemy does not take.
_CONNINFO_RE = re.compile(r"\s*(host|hostaddr|port|dbname|user|password)\s*=", re.IGNORECASE)


# SQLAlchemy's URL syntax (`sqlalchemy.engine.url._parse_url`), reduced to what locates a
# SQLite file: read without importing SQLAlchemy, which a session that only writes its
# SQLite history never needs (tests compare the two on many URLs).
_URL_RE = re.compile(
    r"(?P<name>[\w+]+)://(?:[^:/]*(?::[^@]*)?@)?(?:\[[^/?]+\]|[^/:?]+)?(?::[^/?]*)?"
    r"(?:/(?P<database>[^?]*))?(?:\?.*)?",
    re.DOTALL,
)


def resolve_db_url(value: str | None, rootdir: Path) -> str:
    """The SQLAlchemy URL for a `--perf-db` value.

    None is the default `<rootdir>/.perfguard/history.db`; a value with `://` is a
    SQLAlchemy URL (``postgresql://`` is mapped to psycopg 3); anything else is a SQLite
    file path, relative to `rootdir`.
    """
    if value is None:
        return sqlite_url(rootdir / DEFAULT_DB_PATH)
    text = str(value).strip()
    if not text:
        raise HistoryError(f"--perf-db: {text!r} is not a valid database URL or path")
    if "://" not in text:
        if _CONNINFO_RE.match(text):
            raise HistoryError(
                f"--perf-db: {mask_secrets(text)!r} looks like a libpq connection string; "
                "give a URL instead: postgresql://user:password@host:port/dbname"
            )
        path = Path(text).expanduser()
        return sqlite_url(path if path.is_absolute() else rootdir / path)
    plain = _URL_RE.fullmatch(text)
    if plain is not None and plain["name"] == "sqlite":
        return text  # valid as it is, and the driver is the standard library's
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise HistoryError(
            f"--perf-db: {mask_secrets(text)!r} is not a valid database URL or path"
        ) from None
    if url.drivername in _PG_SCHEMES:
        # Swap the scheme textually: re-rendering the URL could re-encode the password.
        text = "postgresql+psycopg" + text[text.index("://") :]
    check_driver(text)
    return text


def check_driver(url: str) -> None:
    """Fail now, with the fix, if SQLAlchemy or the driver for `url` is missing."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError

    parsed = make_url(url)
    try:
        parsed.get_dialect().import_dbapi()
    except NoSuchModuleError:
        raise HistoryError(
            f"--perf-db: {mask_secrets(url)!r} is not a supported database URL "
            f"(no SQLAlchemy dialect {parsed.drivername!r})"
        ) from None
    except ImportError as exc:
        if parsed.get_backend_name() == "postgresql":
            raise HistoryError(
                f"--perf-db: {mask_secrets(url)}: PostgreSQL needs psycopg 3: "
                "install pytest-perfguard[postgres]"
            ) from None
        raise HistoryError(
            f"--perf-db: {mask_secrets(url)}: the database driver is not installed ({exc})"
        ) from None


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL; None for other backends and in-memory databases."""
    match = _URL_RE.fullmatch(url)
    if match is None:
        from sqlalchemy.engine import make_url  # SQLAlchemy says what is wrong with it

        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return None
        database = parsed.database
    else:
        if match["name"].split("+")[0] != "sqlite":
            return None
        database = unquote(match["database"]) if match["database"] is not None else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def mask_secrets(text: str) -> str:
    """`text` with every password in it replaced by ``***``: URL userinfo, `password=`
    query parameters and libpq `password=` settings. Safe to store, print and log."""
    if "://" in text:
        text = _USERINFO_RE.sub(lambda m: f"{m.group('head')}***@", text)
    if "=" in text:
        text = _KEYWORD_RE.sub(lambda m: f"{m.group('head')}***", text)
    return text
