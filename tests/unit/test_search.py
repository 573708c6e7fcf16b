import pytest

from shop.errors import InvalidValue
from shop.search import catalog
from shop.search.api import UnknownSku
from shop.search.service import SCHEMA, SearchService, SearchSettings, seed_catalog


@pytest.fixture
def search(db) -> SearchService:
    db.apply_schema(SCHEMA)
    settings = SearchSettings(catalog_size=2000, catalog_seed=7)
    seed_catalog(db, settings)
    return SearchService(db, settings)


def test_catalog_is_deterministic():
    assert list(catalog.generate(50, 7)) == list(catalog.generate(50, 7))
    assert list(catalog.generate(50, 7)) != list(catalog.generate(50, 8))


def test_search_ranks_name_matches_first(search):
    hits = search.search("oak lamp", 10)
    assert len(hits) == 10
    assert all("oak" in h.name and "lamp" in h.name for h in hits[:3])
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_input_is_never_fts_syntax(search):
    assert search.search('lamp" OR "x', 5)  # quotes are stripped, not executed
    with pytest.raises(InvalidValue):
        search.search("!!! ???", 5)
    for limit in (0, 101):
        with pytest.raises(InvalidValue):
            search.search("lamp", limit)


def test_prices(search):
    first = next(catalog.generate(1, 7))
    assert search.prices([first.sku, first.sku]) == {first.sku: first.price_cents}
    with pytest.raises(UnknownSku):
        search.prices([first.sku, "SKU-999999"])
