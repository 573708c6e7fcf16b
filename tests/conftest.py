from __future__ import annotations

from pathlib import Path

import pytest

from shop.storage.sqlite import SqliteDatabase


@pytest.fixture
def db(tmp_path: Path) -> SqliteDatabase:
    database = SqliteDatabase(f"sqlite:///{tmp_path / 'unit.db'}")
    yield database
    database.close()
