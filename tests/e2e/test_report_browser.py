"""report.html as a reader's browser shows it: headless Chromium opens a rebuilt report and
finds every figure decoded and drawn, and nothing on the console; and the same look finds a
broken figure and a console error planted in a copy."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench.render.report import build_report
from tests.browser import headless_page, require_chromium

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run-smoke"
IMAGES = ("JSON.stringify(Array.from(document.images).map("
          "i => ({src: i.src.slice(0, 40), complete: i.complete, width: i.naturalWidth})))")


def look(report: Path, profile: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every image of ``report`` as the browser decoded it, and the console's errors."""
    with headless_page(require_chromium(), str(profile)) as page:
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        page.send("Page.navigate", url=report.resolve().as_uri())
        page.wait_for("Page.loadEventFired")
        images = json.loads(page.send("Runtime.evaluate", expression=IMAGES,
                                      returnByValue=True)["result"]["value"])
    errors = [e for e in page.events
              if e["method"] == "Runtime.exceptionThrown"
              or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
              or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    return images, errors


def built_report(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    build_report(run_dir)
    return run_dir


def test_the_report_opens_with_every_figure_and_no_console_error(tmp_path):
    run_dir = built_report(tmp_path)
    images, errors = look(run_dir / "report.html", tmp_path / "profile")
    figures = len(list((run_dir / "figures").glob("*.png")))
    assert figures >= 3 and len(images) == figures, (figures, images)
    assert all(i["complete"] and i["width"] > 100 for i in images), images
    assert not errors, errors


def test_the_look_sees_a_broken_figure_and_a_console_error(tmp_path):
    run_dir = built_report(tmp_path)
    planted = run_dir / "planted.html"
    html = (run_dir / "report.html").read_text()
    planted.write_text(html.replace("base64,", "base64,AAAA", 1).replace(
        "</body>", "<script>console.error('planted')</script></body>"))
    images, errors = look(planted, tmp_path / "profile")
    assert images[0]["width"] == 0 and all(i["width"] > 100 for i in images[1:])
    assert [e["params"]["args"][0]["value"] for e in errors] == ["planted"]
