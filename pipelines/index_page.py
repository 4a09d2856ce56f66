"""The use case's index page, `reports/<usecase>/index.html`: everything a run produced, in one
place, for the people who read it. Rewritten at the end of every chain run and by `make ui`.

It shows the model in service and links to its report and card, the newest result of each
quality gate and Data Docs, the monitor's newest decision and its drift report, the last runs of
the chain with how each ended, and where the MLflow UI is. Every link is relative and is only
written when its target exists, so the folder reads the same copied elsewhere or offline.

Each chain run leaves a small record under `reports/<usecase>/runs/` (`record_run`): the index
lists the newest. Writing the index never fails a run: a problem is logged and the run goes on.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from configs.settings import Settings
from pipelines import pages
from pipelines.results import StageResult
from storage import files as fs
from usecases.project import Project

log = logging.getLogger(__name__)

INDEX = "index.html"
RUNS = "runs"
SHOWN_RUNS = 10


def index_of(settings: Settings) -> str:
    return fs.join(settings.paths.reports, INDEX)


def record_run(settings: Settings, results: list[StageResult], started: datetime) -> str:
    """Keep how a chain run ended, for the index; returns where."""
    failed = next((result for result in results if not result.ok), None)
    record = {
        "started": started.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(sum(result.seconds for result in results), 1),
        "stages": [result.stage for result in results],
        "ok": failed is None,
        "failed_stage": failed.stage if failed else None,
        "problem": failed.problems[0].splitlines()[0] if failed and failed.problems else None,
        "model_version": next(
            (r.handoff["model_version"] for r in results if "model_version" in r.handoff), None
        ),
    }
    target = fs.join(settings.paths.reports, RUNS, f"{started.strftime('%Y%m%dT%H%M%S%fZ')}.json")
    fs.write_text(target, json.dumps(record, indent=1))
    return target


def last_runs(settings: Settings, count: int = SHOWN_RUNS) -> list[dict[str, Any]]:
    folder = fs.join(settings.paths.reports, RUNS)
    if not fs.is_dir(folder):
        return []
    names = sorted((n for n in fs.children(folder) if n.endswith(".json")), reverse=True)
    return [json.loads(fs.read_text(fs.join(folder, name))) for name in names[:count]]


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ usecase }}: what the platform produced</title>{{ style }}</head><body>
<h1>{{ usecase }}</h1>
<p>{{ question }}</p>
<p class="note">Everything the platform's runs produced for this use case, rewritten by every run
(last: {{ written }} UTC).</p>

<h2>The model in service</h2>
{% if champion %}<p class="big" id="champion">Version <span class="champion-version">{{ champion.version }}</span>:
{% for figure in champion.figures %}{{ figure.name }} <span class="champion-{{ figure.key }}">{{ figure.value }}</span>{{ ', ' if not loop.last else '' }}{% endfor %} on the test {{ items }}.</p>
<ul>{% if champion.report %}<li><a href="{{ champion.report }}">Its report</a>: how good it is, in plain words, and what drives it</li>{% endif %}
{% if champion.card %}<li><a href="{{ champion.card }}">Its model card</a>: what it is for and its limits</li>{% endif %}
{% if champion.mlflow %}<li>Its MLflow run: <a href="{{ champion.mlflow }}">{{ champion.mlflow }}</a>{% if local_ui %} (while <code>make ui</code> runs){% endif %}</li>{% endif %}</ul>
{% else %}<p class="big">{{ no_champion }}</p>{% endif %}
{% if reports %}<p>Every version's report: {% for row in reports %}<a href="{{ row.href }}">version {{ row.version }}</a>{{ ', ' if not loop.last else '' }}{% endfor %}.</p>{% endif %}

<h2>Data checks</h2>
{% for run in gates %}<p class="{{ 'ok' if run.success else 'no' }}">{{ run.when }} UTC, {{ run.gate }}:
{{ run.results | length }} table(s){% if run.drops %}, {{ run.drops }} drop(s){% endif %}, {{ 'all passed' if run.success else 'some failed and were held back' }}.</p>
{% else %}<p>No data has been checked yet.</p>{% endfor %}
{% if data_docs %}<p><a href="{{ data_docs }}">Data Docs</a>: every check of every run, rule by rule.</p>{% endif %}

<h2>Watching the model in service</h2>
{% if decision %}<p class="{{ 'no' if decision.retrain else 'ok' }}" id="decision">Window {{ decision.window }} (version {{ decision.version }}): {{ decision.text }}</p>
{% if decision.reasons %}<ul>{% for reason in decision.reasons %}<li>{{ reason }}</li>{% endfor %}</ul>{% endif %}
{% if decision.report %}<p><a href="{{ decision.report }}">Its drift report</a> (Evidently).</p>{% endif %}
{% else %}<p>The monitor has not judged a window yet (it runs once predictions are logged: <code>python -m pipelines run monitor</code>).</p>{% endif %}

<h2>The last runs</h2>
{% if runs %}<table><tr><th>started (UTC)</th><th>stages</th><th class="num">seconds</th><th>how it ended</th></tr>
{% for run in runs %}<tr><td>{{ run.started }}</td><td>{{ run.stages | join(', ') }}</td><td class="num">{{ run.seconds }}</td>
<td class="{{ 'ok' if run.ok else 'no' }}">{{ 'done' ~ (', model version ' ~ run.model_version if run.model_version else '') if run.ok else 'stopped at ' ~ run.failed_stage ~ ': ' ~ run.problem }}</td></tr>
{% endfor %}</table>{% else %}<p>No chain run recorded yet.</p>{% endif %}

<h2>For engineers</h2>
<ul><li>MLflow: {% if mlflow_ui %}<a href="{{ mlflow_ui }}">{{ mlflow_ui }}</a>{% if local_ui %} (while <code>make ui</code> runs){% endif %}{% else %}{{ tracking }}{% endif %}</li>
<li>The prediction log: <code>{{ prediction_log }}</code>; the monitor's decisions: <code>{{ monitoring }}</code></li></ul>
</body></html>
"""


def write(project: Project, now: datetime | None = None) -> str:
    """Rewrite the use case's index page from what is there now; returns its location."""
    from pipelines import data_docs  # the gate's modules: Spark and GX, only when writing

    settings = project.settings
    reports = settings.paths.reports
    context: dict[str, Any] = {
        "usecase": project.usecase.name,
        "question": project.usecase.outcome.question,
        "items": project.usecase.outcome.items,
        "written": (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M"),
        "tracking": settings.mlflow.tracking_uri,
        "mlflow_ui": _mlflow_ui(settings),
        "local_ui": _local_tracking(settings),
        "prediction_log": _shown(settings.paths.prediction_log),
        "monitoring": _shown(settings.paths.monitoring),
        "runs": last_runs(settings),
        "reports": _reports(reports),
    }
    context |= _champion(project, context["mlflow_ui"])
    results = data_docs.read(reports)
    newest: dict[str, data_docs.GateRun] = {}
    for run in data_docs.gate_runs(results):
        newest.setdefault(run.gate, run)
    context["gates"] = list(newest.values())
    context["data_docs"] = _relative_if(reports, data_docs.index_of(reports))
    context["decision"] = _decision(settings)
    target = index_of(settings)
    fs.write_text(target, pages.render(TEMPLATE, **context))
    return target


def refresh(project: Project) -> str | None:
    """`write`, for the end of a run: a problem is logged, never raised."""
    try:
        return write(project)
    except Exception:
        log.warning("the use case's index page was not rewritten", exc_info=True)
        return None


def _shown(location: str) -> str:
    """A location as people type it: relative to the working directory when under it."""
    if fs.is_remote(location):
        return location
    path = Path(location).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else location


def _local_tracking(settings: Settings) -> bool:
    return settings.mlflow.tracking_uri.startswith("sqlite:")


def _mlflow_ui(settings: Settings) -> str | None:
    uri = settings.mlflow.tracking_uri
    if _local_tracking(settings):
        return f"http://127.0.0.1:{settings.mlflow.ui_port}/"
    return uri.rstrip("/") + "/" if uri.startswith(("http://", "https://")) else None


def _relative_if(reports: str, location: str) -> str | None:
    """`location`'s path from the index, when the file is there."""
    if not fs.is_file(location):
        return None
    return location.removeprefix(reports.rstrip("/") + "/")


def _reports(reports: str) -> list[dict[str, str]]:
    folder = fs.join(reports, "model")
    if not fs.is_dir(folder):
        return []
    versions = sorted(
        (
            name.removeprefix("version-")
            for name in fs.children(folder)
            if name.startswith("version-")
        ),
        key=lambda v: int(v) if v.isdigit() else 0,
        reverse=True,
    )
    return [
        {"version": v, "href": f"model/version-{v}/index.html"}
        for v in versions
        if fs.is_file(fs.join(folder, f"version-{v}", "index.html"))
    ]


def _champion(project: Project, mlflow_ui: str | None) -> dict[str, Any]:
    from models import evaluation
    from models.tracking import Tracker, TrackingUnavailable
    from pipelines import card

    settings = project.settings
    tracker = Tracker(settings)
    try:
        champion = tracker.champion()
    except TrackingUnavailable as err:
        return {"champion": None, "no_champion": f"MLflow cannot be read: {err}"}
    if champion is None:
        return {"champion": None, "no_champion": "No model is in service yet: run `make train`."}
    scores = tracker.run_metrics(champion.run_id)
    headline = evaluation.task(project.usecase.target.kind).headline
    folder = fs.join(settings.paths.reports, "model", f"version-{champion.version}")
    return {
        "champion": {
            "version": champion.version,
            "figures": [
                {
                    "key": name,
                    "name": evaluation_name(name),
                    "value": f"{scores[f'test_{name}']:.3f}",
                }
                for name in headline
                if f"test_{name}" in scores
            ],
            "report": _relative_if(settings.paths.reports, fs.join(folder, "index.html")),
            "card": _relative_if(settings.paths.reports, fs.join(folder, card.CARD_HTML)),
            "mlflow": f"{mlflow_ui}#/experiments/{tracker.experiment_id}/runs/{champion.run_id}"
            if mlflow_ui
            else None,
        }
    }


def evaluation_name(metric: str) -> str:
    from pipelines.report import PLAIN_NAMES

    return PLAIN_NAMES.get(metric, metric)


def _decision(settings: Settings) -> dict[str, Any] | None:
    from monitoring import decisions
    from monitoring.monitor import RETRAIN
    from pipelines.monitor import report_page

    decision = decisions.newest(settings.paths.monitoring)
    if decision is None:
        return None
    version = str(decision.get("champion_version", ""))
    window_to = str(decision.get("window_to", ""))
    verdict = str(decision.get("decision", ""))
    return {
        "window": f"{decision.get('window_from', '?')} to {window_to}",
        "version": version,
        "retrain": verdict == RETRAIN,
        "text": {RETRAIN: "retrain: a new version is being trained"}.get(verdict, verdict),
        "reasons": list(decision.get("reasons", []))[:5],
        "report": _relative_if(
            settings.paths.reports, report_page(settings.paths.reports, window_to, version)
        ),
    }
