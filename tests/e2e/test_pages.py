"""The browser tier: the pages people read, opened in a real browser after a chain run.

Headless Chromium (the system's, `make test` installs Debian's package; MLOPS_CHROMIUM names
another), driven by Playwright, starts at the use case's index page and opens every page it
links to: the model report and card, Data Docs and each result, the monitor's drift report.
Each page fails the test on a console error, a script error, a request that fails, a request
that leaves this machine (the pages must read offline), a missing image, or a link that does
not resolve: a file link to a file that is not there, or an MLflow link the MLflow UI (started
here as `make ui` starts it) does not answer. A few facts are checked against the run itself:
the champion's version and ROC AUC on the index and in its report, the drops the silver gate
checked in Data Docs.

`make screenshots` runs this module with MLOPS_SCREENSHOTS=docs/screenshots: the README's
screenshots are the ones taken here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urlparse

import pytest
import requests

from configs import Settings
from models.tracking import Tracker
from pipelines.adapters.storage import StorageLayout
from pipelines.chain import run_chain
from pipelines.cli import ui_command
from tests.conftest import platform_settings
from tests.lake_helpers import problems
from tests.serving_helpers import PLATFORM, free_port

pytestmark = pytest.mark.browser

CHROMIUM_VARIABLE = "MLOPS_CHROMIUM"
SCREENSHOTS_VARIABLE = "MLOPS_SCREENSHOTS"
# The pages the README shows, by where they are under the use case's reports (version 1 is the
# champion of the session's trained platform), and the screenshot each one makes.
SCREENSHOTS = {
    "index.html": "index.png",
    "model/version-1/index.html": "model_report.png",
    "data_docs/index.html": "data_docs.png",
}
# Chromium in a closed network, as root: no sandbox, no calls home (they are refused here).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MONTH = "2024-03"
VIEWPORT = {"width": 1100, "height": 900}
SCREENSHOT_HEIGHT = 1300
# Pages another tool writes (Evidently's drift reports): they must open offline without an
# error, but their links to the tool's makers (plotly.com on every chart) are not the platform's.
WRITTEN_BY_OTHERS = ("monitoring/",)


def chromium() -> str:
    found = os.environ.get(CHROMIUM_VARIABLE) or shutil.which("chromium")
    if not found or not Path(found).is_file():
        pytest.fail(
            f"the browser tier needs Chromium: `make test` installs Debian's package; elsewhere set "
            f"{CHROMIUM_VARIABLE} to a Chrome or Chromium binary (found: {found or 'none'})"
        )
    return found


@pytest.fixture(scope="module")
def produced(
    platform_trained_root: Path, spark, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """The trained platform's pages, then a month scored and judged by the monitor: every
    kind of page a run writes (the reports are a copy: the shared platform is unchanged)."""
    tmp = tmp_path_factory.mktemp("pages")
    shutil.copytree(platform_trained_root / "reports", tmp / "reports")
    settings = platform_settings(platform_trained_root).with_overrides(
        {
            "paths": {
                "reports": str(tmp / "reports"),
                "prediction_log": str(tmp / "prediction_log"),
                "monitoring": str(tmp / "monitoring"),
            },
            "monitoring": {"drift": {"min_rows": 50, "window_days": 35}},
            "mlflow": {"ui_port": free_port()},
        }
    )
    for stages, handoff in ((("batch-predict",), {"period": MONTH}), (("monitor",), {})):
        results = run_chain(settings, stages, spark=spark, handoff=handoff)
        assert all(r.ok for r in results), problems(results)
    return settings


@pytest.fixture(scope="module")
def mlflow_ui(produced: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The MLflow UI as `make ui` starts it, on the port the index links to."""
    port = produced.mlflow.ui_port
    log = (tmp_path_factory.mktemp("mlflow-ui") / "ui.log").open("w")
    process = subprocess.Popen(
        ui_command(produced, port), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(url, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, f"the MLflow UI exited: see {log.name}"
            assert time.monotonic() < deadline, f"the MLflow UI did not answer: see {log.name}"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@dataclass
class Opened:
    """One page as the browser saw it."""

    url: str
    title: str
    text: str
    links: list[str]
    troubles: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser: Any, url: str, screenshot: Path | None = None) -> Opened:
    """Open `url` offline: what it says, where it links, and everything that went wrong."""
    troubles: list[str] = []
    context = browser.new_context(viewport=VIEWPORT)

    def only_this_machine(route: Any) -> None:
        target = urlparse(route.request.url)
        if target.scheme in ("file", "data") or target.hostname == "127.0.0.1":
            route.continue_()
        else:
            troubles.append(f"asks for {route.request.url} (the pages must read offline)")
            route.abort()

    context.route("**/*", only_this_machine)
    page = context.new_page()
    page.on(
        "console", lambda m: troubles.append(f"console {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda err: troubles.append(f"script error: {err}"))
    page.on("requestfailed", lambda r: troubles.append(f"{r.url} failed: {r.failure}"))
    page.goto(url, wait_until="load")
    troubles += [
        f"image {source} did not load"
        for source in page.eval_on_selector_all(
            "img",
            "images => images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)",
        )
    ]
    links = page.eval_on_selector_all("a[href]", "anchors => anchors.map(a => a.href)")
    opened = Opened(url, page.title(), page.inner_text("body"), links, troubles)
    if screenshot is not None:  # the top of the page, as a reader first sees it
        height = min(page.evaluate("document.body.scrollHeight"), SCREENSHOT_HEIGHT)
        clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height}
        page.screenshot(path=str(screenshot), full_page=True, clip=clip)
    context.close()
    return opened


def link_trouble(link: str, mlflow_ui: str, *, outside_allowed: bool = False) -> str | None:
    """Why `link` does not resolve, or None (`outside_allowed`: a link off this machine is a
    credit in a page another tool wrote, not checked)."""
    target, _ = urldefrag(link)
    parsed = urlparse(target)
    if parsed.scheme == "file":
        return None if Path(unquote(parsed.path)).is_file() else f"link to a missing file: {link}"
    if target.startswith(mlflow_ui):
        answer = requests.get(target, timeout=10)
        return None if answer.ok else f"MLflow UI answered {answer.status_code} to {link}"
    return None if outside_allowed else f"link leaves the machine: {link}"


@pytest.fixture(scope="module")
def crawled(
    produced: Settings, browser: Any, mlflow_ui: str, tmp_path_factory
) -> dict[str, Opened]:
    """Every page reachable from the index (the platform's pages, and the drift report they
    link to), opened once; screenshots of the README's pages."""
    reports = Path(produced.paths.reports)
    wanted = os.environ.get(SCREENSHOTS_VARIABLE)
    shots = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    pending, seen = [(reports / "index.html").as_uri()], {}
    while pending:
        url = pending.pop()
        if url in seen:
            continue
        relative = Path(unquote(urlparse(url).path)).relative_to(reports).as_posix()
        shot = shots / SCREENSHOTS[relative] if relative in SCREENSHOTS else None
        opened = seen[url] = open_page(browser, url, shot)
        for link in set(opened.links):
            credit = relative.startswith(WRITTEN_BY_OTHERS)
            trouble = link_trouble(link, mlflow_ui, outside_allowed=credit)
            if trouble:
                opened.troubles.append(trouble)
                continue
            target, _ = urldefrag(link)
            if target.startswith(reports.as_uri()) and target.endswith(".html"):
                pending.append(target)
    return {
        Path(unquote(urlparse(u).path)).relative_to(reports).as_posix(): o for u, o in seen.items()
    }


def test_every_page_opens_offline_without_an_error_and_every_link_resolves(crawled) -> None:
    troubles = {page: opened.troubles for page, opened in crawled.items() if opened.troubles}
    assert not troubles, troubles
    kinds = {page.split("/")[0] for page in crawled}
    # the index reaches every kind of page a run writes
    assert {"index.html", "model", "data_docs", "monitoring"} <= kinds, sorted(crawled)


def test_the_champion_on_the_index_and_in_its_report_is_the_registry_s(
    produced: Settings, crawled
) -> None:
    tracker = Tracker(produced)
    champion = tracker.champion()
    assert champion is not None
    roc_auc = f"{tracker.run_metrics(champion.run_id)['test_roc_auc']:.3f}"
    index = crawled["index.html"].text
    assert f"Version {champion.version}:" in index and f"(ROC AUC) {roc_auc}" in index, index
    report = crawled[f"model/version-{champion.version}/index.html"]
    assert f"Model version {champion.version}" in report.title
    assert roc_auc in report.text
    assert f"model/version-{champion.version}/model_card.html" in crawled


def test_data_docs_show_every_drop_the_silver_gate_checked(produced: Settings, crawled) -> None:
    layout = StorageLayout(produced.paths)
    published = sum(len(layout.drops_in(layout.silver(s.name))) for s in PLATFORM.sources)
    docs = crawled["data_docs/index.html"].text
    assert f"Every table passed. {published} drop(s) checked." in docs, docs
    results = [page for page in crawled if page.startswith("data_docs/results/")]
    silver_tables = {s.name for s in PLATFORM.sources}
    assert {Path(page).stem.rsplit("_", 2)[0] for page in results} >= silver_tables
    feature_tables = {view.name for view in PLATFORM.views}
    assert any(Path(page).stem.startswith(tuple(feature_tables)) for page in results)


def test_the_index_names_the_monitor_s_decision(crawled) -> None:
    index = crawled["index.html"].text
    assert re.search(rf"Window \S+ to {MONTH}", index) and "Its drift report" in index, index


def test_the_readme_shows_the_screenshots_this_tier_takes() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name in SCREENSHOTS.values():
        assert f"docs/screenshots/{name}" in readme
        assert (Path(__file__).parents[2] / "docs" / "screenshots" / name).is_file()
