"""The results directory: whole-file writes, long tables streamed as parts and put together."""
from __future__ import annotations

import csv
import json

from bench.results.store import (MANIFEST, RESOURCES, STEPS, RunStore, assemble_parts,
                                 write_json_atomic)


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tables_are_rewritten_whole_and_streamed_tables_assembled_at_the_end(tmp_path):
    store = RunStore(tmp_path, "r1")
    store.start({"config": {"seed": 3}})
    manifest = json.loads((tmp_path / "r1" / MANIFEST).read_text())
    assert manifest["complete"] is False and manifest["config"] == {"seed": 3}
    for step in range(3):
        store.add_rows(STEPS, [{"step": step, "ok": True}])
        store.add_rows(RESOURCES, [{"step": step, "cpu_s": 0.5, **({"extra": 1} if step == 2 else {})}])
        store.flush()
        assert len(read(tmp_path / "r1" / STEPS)) == step + 1
        assert not (tmp_path / "r1" / RESOURCES).exists()  # parts only, until the end
    store.finish(False, "interrupted")
    manifest = json.loads((tmp_path / "r1" / MANIFEST).read_text())
    assert manifest["complete"] is False and manifest["incomplete_reason"] == "interrupted"
    assert len(read(tmp_path / "r1" / RESOURCES)) == 3
    resources = read(tmp_path / "r1" / RESOURCES)
    assert [r["extra"] for r in resources] == ["", "", "1"]  # columns united across parts
    assert not list((tmp_path / "r1").glob(".*.tmp"))


def test_assembling_again_gives_the_same_table(tmp_path):
    store = RunStore(tmp_path, "r2")
    store.add_rows(RESOURCES, [{"a": 1}, {"a": 2}])
    assemble_parts(store.dir)
    first = (store.dir / RESOURCES).read_text()
    assemble_parts(store.dir)
    assert (store.dir / RESOURCES).read_text() == first == "a\n1\n2\n"


def test_json_is_replaced_atomically(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
