"""Data Docs: every quality gate's results, newest first, as pages that read offline.

The gate (`pipelines/adapters/quality.py`) keeps each Great Expectations validation result as
JSON under `reports/<usecase>/validation/`, with the measurements GX judged. This module renders
all of them, the silver gate's (each delivery of raw data, before it is published) and the
feature tables' (before they replace the previous ones), across stages and runs:

- `data_docs/index.html`: every gate run, newest first, with each table's verdict and the
  number of deliveries (drops) it checked;
- `data_docs/results/<result>.html`: one result: each rule in plain words, the share of rows it
  allows to break it, and what each drop measured, failures marked.

Why not GX's own Data Docs site: its pages load their scripts and styles from seven CDNs
(jQuery, Bootstrap, bootstrap-table, Vega, Font Awesome...) and its images from GX's bucket, so
offline they render empty, and GX offers no setting to serve them from the site. These pages are
static HTML built from GX's own results (`pipelines/pages.py`): nothing to load from elsewhere.
Rebuilding reads every kept result, so a later stage never hides an earlier one's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pipelines import pages
from storage import files as fs

log = logging.getLogger(__name__)

# What the gate keeps, and where: GX's validation result as JSON, one file per table checked,
# with what was checked in its `meta` under CHECKED (the contract between the two modules).
VALIDATION_FOLDER = "validation"
CHECKED, CHECKED_TABLE, CHECKED_BY_DROP, CHECKED_RUN = "checked", "table", "by_drop", "run"
MEASURED = "measurements"  # one row per drop (GROUP), its rows (ROWS) and each rule's share
GROUP = "drop_id"
ROWS = "rows"

FOLDER = "data_docs"
INDEX = "index.html"
RESULTS = "results"
# The two gates, in the words the pages use.
SILVER_GATE = "raw data (each delivery, before it is published)"
FEATURES_GATE = "feature tables (before they replace the previous ones)"


def results_dir(reports_dir: str) -> str:
    return fs.join(reports_dir, VALIDATION_FOLDER)


def docs_dir(reports_dir: str) -> str:
    return fs.join(reports_dir, FOLDER)


def index_of(reports_dir: str) -> str:
    """Where Data Docs' index page is."""
    return fs.join(docs_dir(reports_dir), INDEX)


@dataclass
class Rule:
    """One expectation of a result: the rule in words, what it allows, and each drop's value."""

    description: str
    allowed: str
    success: bool
    values: dict[str, str]  # drop -> what it measured
    failed: set[str]  # drops that broke it


@dataclass
class Checked:
    """One kept validation result."""

    name: str  # the result file's name, without .json
    table: str
    gate: str
    run: str
    when: str  # validated at, UTC, to the second
    success: bool
    drops: list[str]
    rows: dict[str, int]
    rules: list[Rule] = field(default_factory=list)

    @property
    def page(self) -> str:
        return f"{RESULTS}/{self.name}.html"

    @property
    def failed_drops(self) -> list[str]:
        return sorted({drop for rule in self.rules for drop in rule.failed})


@dataclass
class GateRun:
    """Every result of one stage's run of one gate."""

    gate: str
    run: str
    when: str
    results: list[Checked]

    @property
    def success(self) -> bool:
        return all(result.success for result in self.results)

    @property
    def drops(self) -> int:
        return sum(len(result.drops) for result in self.results if result.gate == SILVER_GATE)


def read(reports_dir: str) -> list[Checked]:
    """Every kept result under `reports_dir`, newest first (unreadable ones are named in the
    log and left out: one bad file does not hide the others)."""
    folder = results_dir(reports_dir)
    if not fs.is_dir(folder):
        return []
    found = []
    for name in fs.children(folder):
        if not name.endswith(".json"):
            continue
        try:
            found.append(
                _parse(name.removesuffix(".json"), json.loads(fs.read_text(fs.join(folder, name))))
            )
        except (ValueError, KeyError, TypeError) as err:
            log.warning("Data Docs: %s left out, it cannot be read: %s", name, err)
    return sorted(found, key=lambda checked: (checked.when, checked.name), reverse=True)


def _parse(name: str, record: dict[str, Any]) -> Checked:
    meta = record.get("meta", {})
    checked = meta.get(CHECKED, {})
    measurements = checked.get(MEASURED, [])
    drops = [str(row[GROUP]) for row in measurements]
    by_drop = checked.get(CHECKED_BY_DROP, True)
    result = Checked(
        name=name,
        table=checked.get(CHECKED_TABLE, record.get("suite_name", name)),
        gate=SILVER_GATE if by_drop else FEATURES_GATE,
        run=checked.get(CHECKED_RUN, name),
        when=str(meta.get("validation_time", ""))[:19].replace("T", " "),
        success=bool(record["success"]),
        drops=drops,
        rows={str(row[GROUP]): int(row[ROWS]) for row in measurements},
    )
    for outcome in record["results"]:
        config = outcome["expectation_config"]
        kwargs = config["kwargs"]
        column = kwargs["column"]
        failed = {
            str(index[GROUP])
            for index in (outcome.get("result") or {}).get("unexpected_index_list") or []
        }
        if not outcome["success"] and not failed:
            failed = set(drops)  # a rule GX could not evaluate holds every drop back
        if column == ROWS:
            allowed = f"{kwargs['min_value']:,.0f} to {kwargs['max_value']:,.0f} rows"
            values = {drop: f"{result.rows[drop]:,} rows" for drop in drops}
        else:
            allowed = (
                f"at most {_share(kwargs['max_value'])} of rows break it"
                if kwargs["max_value"]
                else "no row breaks it"
            )
            values = {str(row[GROUP]): _share(row[column]) for row in measurements if column in row}
        result.rules.append(
            Rule(
                config.get("description") or column,
                allowed,
                bool(outcome["success"]),
                values,
                failed,
            )
        )
    return result


def _share(value: float) -> str:
    return "0%" if value == 0 else f"{100 * value:.3g}%"


def gate_runs(results: list[Checked]) -> list[GateRun]:
    """The results grouped by gate and stage run, newest first."""
    runs: dict[tuple[str, str], GateRun] = {}
    for result in results:
        key = (result.gate, result.run)
        if key not in runs:
            runs[key] = GateRun(result.gate, result.run, result.when, [])
        runs[key].results.append(result)
    return list(runs.values())


INDEX_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Data checks: {{ usecase }}</title>{{ style }}</head><body>
<nav><a href="../index.html">{{ usecase }}: everything a run produced</a></nav>
<h1>Data checks: {{ usecase }}</h1>
<p>Before anything is built from data it is checked against rules in plain words: complete, well formed,
values in range, no duplicates. A delivery (a drop) that breaks a rule is set aside with the reason, and the
others go through; a feature table that breaks one replaces nothing. Rules are checked by Great Expectations;
every check is listed here, newest first.</p>
{% if not runs %}<p class="big">No data has been checked yet.</p>{% endif %}
{% for run in runs %}
<h2>{{ run.when }} UTC: {{ run.gate }}</h2>
<p class="{{ 'ok' if run.success else 'no' }}">{{ 'Every table passed.' if run.success else 'Some data failed its checks and was held back.' }}
{% if run.drops %}<span class="drops-checked">{{ run.drops }}</span> drop(s) checked.{% endif %}</p>
<table><tr><th>table</th>{% if run.drops %}<th class="num">drops</th>{% endif %}<th class="num">rules</th><th>result</th><th></th></tr>
{% for result in run.results %}<tr><td>{{ result.table }}</td>{% if run.drops %}<td class="num">{{ result.drops | length }}</td>{% endif %}
<td class="num">{{ result.rules | length }}</td>
<td class="{{ 'ok' if result.success else 'no' }}">{{ 'passed' if result.success else 'failed: ' ~ (result.failed_drops | join(', ')) }}</td>
<td><a href="{{ result.page }}">details</a></td></tr>
{% endfor %}</table>
{% endfor %}
</body></html>
"""

RESULT_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ result.table }}, {{ result.when }} UTC</title>{{ style }}</head><body>
<nav><a href="../index.html">Data checks</a> · <a href="../../index.html">{{ usecase }}</a></nav>
<h1>{{ result.table }}</h1>
<p>Checked {{ result.when }} UTC, as {{ result.gate }}.</p>
<p class="{{ 'ok' if result.success else 'no' }} big">{{ 'Passed every rule.' if result.success else 'Failed: ' ~ (result.failed_drops | join(', ')) ~ ' held back.' }}</p>
<table><tr><th>rule</th><th>allowed</th>{% for drop in result.drops %}<th class="num">{{ drop }}</th>{% endfor %}</tr>
{% for rule in result.rules %}<tr><td>{{ rule.description }}</td><td>{{ rule.allowed }}</td>
{% for drop in result.drops %}<td class="num{{ ' broken' if drop in rule.failed else '' }}">{{ rule.values.get(drop, '') }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p class="note">Each cell is what one {{ 'drop' if result.gate == silver else 'table' }} measured: the share of its rows that break
the rule. Great Expectations' own result is kept as JSON: validation/{{ result.name }}.json.</p>
</body></html>
"""


def publish(reports_dir: str, usecase: str) -> str:
    """Render Data Docs from every kept result under `reports_dir`; the index's location."""
    results = read(reports_dir)
    target = docs_dir(reports_dir)
    for result in results:
        page = pages.render(RESULT_TEMPLATE, result=result, usecase=usecase, silver=SILVER_GATE)
        fs.write_text(fs.join(target, result.page), page)
    index = index_of(reports_dir)
    fs.write_text(index, pages.render(INDEX_TEMPLATE, runs=gate_runs(results), usecase=usecase))
    return index
