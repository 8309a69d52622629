"""Client databases a process reads or changes: a connection named in ``BPO_CONNECTIONS``, or a URL without a password.

A run's parameters are shown in the Prefect UI and kept in its database, so a URL that holds a
password is refused: the connection is named in the settings instead, and only its name travels.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bpo.settings import Settings


class ConnectionRefused(ValueError):
    """Neither a named connection nor a usable URL; the message says why, and never holds a password."""


def connection_url(database: str, settings: Settings) -> tuple[str, str]:
    """The URL to connect with (it may hold a password: never log it) and a label to show for it."""
    named = settings.connections.get(database)
    if named is not None:
        return named.get_secret_value(), database
    try:
        url = make_url(database)
    except ArgumentError:
        raise ConnectionRefused(f"{database!r} is neither a SQLAlchemy URL nor a connection named in BPO_CONNECTIONS "
                                f"(known: {', '.join(sorted(settings.connections)) or 'none'})") from None
    if url.password is not None:
        raise ConnectionRefused(f"the URL {url.render_as_string(hide_password=True)} holds a password: name the "
                                f"connection in BPO_CONNECTIONS instead, so that it stays out of the run's parameters")
    return database, url.render_as_string(hide_password=True)
