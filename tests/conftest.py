from __future__ import annotations

from pathlib import Path

import pytest

from shop.storage import Database


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'unit.db'}")
    yield database
    database.close()
