"""What a ``postgresql://`` URL names, read without psycopg (an optional extra), so a
topology can be checked on a machine that will never open it."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from shop.errors import InvalidValue

DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def database_name(url: str) -> str:
    """The database a ``postgresql://`` URL names. Raises InvalidValue."""
    name = urlsplit(url).path.lstrip("/")
    if not DATABASE_NAME.fullmatch(name):
        raise InvalidValue(f"database URL {url!r}: the database name must be 1-63 lowercase "
                           f"letters, digits or '_' (not {name!r})")
    return name
