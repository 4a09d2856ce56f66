"""Governance on the platform's trained use case: every version has a model card that says the
report's numbers, and the Bento carries the champion's card and is refused without one. (An
explained prediction over HTTP: tests/e2e/test_serving_http.py.)"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import yaml

import models
from configs import handoff
from models.tracking import CHAMPION, Tracker
from pipelines import card
from pipelines.chain import run_chain
from tests.conftest import platform_settings


def _report_folder(root: Path, version: str = "1") -> Path:
    return Path(platform_settings(root).paths.reports) / "model" / f"version-{version}"


def _markdown_rows(text: str) -> set[tuple[str, ...]]:
    """The rows of the card's tables (their rule rows left out)."""
    rows = set()
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = tuple(cell.strip() for cell in line.strip("|").split("|"))
            rows.add(cells)
    return rows


def _html_rows(page: str) -> set[tuple[str, ...]]:
    return {
        tuple(html.unescape(cell) for _, cell in re.findall(r"<(td|th)>(.*?)</\1>", row))
        for row in re.findall(r"<tr>(.*?)</tr>", page, flags=re.S)
    }


def test_the_card_and_the_report_say_the_same_numbers(platform_trained_root: Path) -> None:
    folder = _report_folder(platform_trained_root)
    report = (folder / "index.html").read_text()
    markdown = (folder / card.CARD_MARKDOWN).read_text()
    card_page = (folder / card.CARD_HTML).read_text()
    in_card, in_report = _markdown_rows(markdown), _html_rows(report)
    # Every figure and every slice row of the card is in the report, and the other way round.
    assert len(in_card) > 10
    assert in_card == in_report
    assert _html_rows(card_page) == in_report
    # ... and they are the run's own numbers.
    tracker = Tracker(platform_settings(platform_trained_root))
    metrics = tracker.run_metrics(tracker.version("1").run_id)
    assert ("ranking quality (ROC AUC)", f"{metrics['test_roc_auc']:.3f}") in in_card
    support = int(metrics["slice.facility.S1.support"])
    s1 = next(row for row in in_card if row[0] == "the facility: S1")
    assert s1[1] == f"{support:,}"
    assert s1[2] == f"{metrics['slice.facility.S1.roc_auc']:.3f}"
    # The card says what the use case declares and what the gate decided.
    assert "Exercising the platform" in markdown
    assert "version 1 now answers predictions" in markdown
    assert "## The gate's decision" in markdown and "no champion yet" in markdown


def test_the_bento_carries_the_champions_card(platform_trained_root: Path) -> None:
    """The Bento's model (what `bentoml containerize` puts in the image with it) holds the
    card, under the digest the service checks at start."""
    home = Path(platform_settings(platform_trained_root).paths.bentoml_home)
    bentos = list((home / "bentos").glob("*/*/bento.yaml"))
    assert bentos
    for info in bentos:
        for model in yaml.safe_load(info.read_text())["models"]:
            name, version = model["tag"].split(":")
            folder = home / "models" / name / version
            carried = folder / "mlflow_model" / card.CARD_DIR / card.CARD_MARKDOWN
            assert carried.is_file(), f"{model['tag']} carries no model card"
            assert "# Model card: " in carried.read_text()
            recorded = yaml.safe_load((folder / "model.yaml").read_text())["metadata"]
            assert models.folder_digest(folder / "mlflow_model") == recorded[handoff.DIGEST_KEY]


def test_a_champion_without_a_card_is_not_packaged(
    platform_trained_root: Path, tmp_path: Path, spark
) -> None:
    root = tmp_path / "no-card"
    shutil.copytree(platform_trained_root, root, ignore=shutil.ignore_patterns("serve-*.log"))
    settings = platform_settings(root, promotion={"min_improvement": 0.0})
    # A new champion whose report (and so its card) was never written.
    trained = run_chain(settings, ("fit", "promote"), spark=spark)
    assert all(r.ok for r in trained)
    tracker = Tracker(settings)
    assert tracker.alias(CHAMPION).version == "2"
    refused = run_chain(settings, ("package",), spark=spark)[-1]
    assert not refused.ok
    assert "version 2, has no model card" in refused.problems[0]
    # The report stage writes the champion's card; then it ships.
    assert run_chain(settings, ("report", "package"), spark=spark)[-1].ok
