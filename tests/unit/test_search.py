import pytest

from shop.errors import InvalidValue
from shop.search import catalog
from shop.search.api import UnknownSku
from shop.search.service import SCHEMA, Scatter, SearchService, SearchSettings, seed_catalog
from tests.fakes import FakeSearch


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


def test_shards_partition_the_results(search):
    everything = {h.sku for h in search.search("kettle", 100)}
    sharded = [{h.sku for h in search.shard_search("kettle", s, 4, 100)} for s in range(4)]
    assert set().union(*sharded) == everything
    assert sum(map(len, sharded)) == len(everything)


def test_scatter_gathers_the_same_top_hits_as_one_query(search):
    scatter = Scatter(search)
    try:
        assert scatter.scatter("oak lamp", 4, 10) == search.search("oak lamp", 10)
        with pytest.raises(InvalidValue):
            scatter.scatter("lamp", 0)
    finally:
        scatter.close()


def test_scatter_over_a_fake_search():
    scatter = Scatter(FakeSearch({"SKU-1": 100, "SKU-2": 200, "SKU-3": 300}))
    try:
        assert {h.sku for h in scatter.scatter("SKU", 2)} == {"SKU-1", "SKU-2", "SKU-3"}
    finally:
        scatter.close()


def test_seeding_twice_is_a_no_op(db, search):
    before = db.query_one("SELECT count(*) AS n FROM search_products")["n"]
    seed_catalog(db, search.settings)
    assert db.query_one("SELECT count(*) AS n FROM search_products")["n"] == before == 2000
