"""notebooks/p99_compounding.ipynb runs, top to bottom, on the committed reference run (and
so on any run of the same shape) and writes its figures: it cannot rot unseen."""
from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "p99_compounding.ipynb"
REFERENCE = ROOT / "results" / "reference"
FIGURES = ("percentiles-vs-n.png", "slow-fraction.png", "hedging.png", "chain.png")


def test_the_notebook_executes_and_writes_its_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("SEAMBENCH_RUN", str(REFERENCE))
    monkeypatch.setenv("SEAMBENCH_FIGURES", str(tmp_path))
    monkeypatch.setenv("SEAMBENCH_REPO", str(ROOT))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 5_000, name
    assert any(tmp_path.glob("spectrum-*.png"))
    errors = [o for cell in notebook.cells for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
