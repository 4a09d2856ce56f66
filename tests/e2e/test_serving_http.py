"""`python -m serving` for real: a `bentoml serve` process over the champion of the platform's
use case, checked over HTTP for readiness, good answers and 4xx for client mistakes."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import psutil
import pytest
import requests

from configs.settings import OVERRIDES_VARIABLE, _deep_merge
from models.tracking import CHAMPION, Tracker
from pipelines.chain import run_chain
from serving.service import PredictionService
from tests.conftest import PLATFORM_USECASE, platform_overrides, platform_settings
from tests.lake_helpers import problems
from tests.secrets_scan import ENTROPY, findings
from tests.serving_helpers import (
    DECISION,
    EXAMPLE,
    ITEMS,
    NAMES,
    PLATFORM,
    SCORE,
    body,
    free_port,
    serving,
)
from usecases.contract import EVENT_TIMESTAMP

Item = PLATFORM.request.item
# A meter and facility the online store has never seen.
UNKNOWN = {**EXAMPLE, "meter_id": "X9M9", "facility_id": "X9"}
# A stored feature of each view, and the first one a client's unknown meter lacks.
STORED = {view.name: view.features[0].name for view in PLATFORM.views}
METER_FEATURE = STORED["meter_recent"]
# A day the committed data covers, in the test window.
DAY = "2024-03-20"


def test_a_good_request_gets_probabilities_from_the_champion(server: str) -> None:
    response = requests.post(f"{server}/predict", json=body(EXAMPLE, UNKNOWN), timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_version"] == "1"
    first, second = answer["predictions"]
    assert 0.0 <= first[SCORE] <= 1.0
    assert first[DECISION] == (first[SCORE] >= first["threshold"])
    assert not first["missing_features"]
    assert METER_FEATURE in second["missing_features"]  # a meter the store has never seen


def test_the_batching_endpoint_answers_like_predict(server: str) -> None:
    """/predict_batch (adaptive batching) scores each item exactly as /predict does, also
    when concurrent requests are merged into one batch."""
    items = [EXAMPLE, UNKNOWN]
    expected = requests.post(f"{server}/predict", json=body(*items), timeout=30).json()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(
                lambda item: requests.post(f"{server}/predict_batch", json=body(item), timeout=30),
                items * 4,
            )
        )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    for answer, want in zip(answers, expected["predictions"] * 4, strict=True):
        (got,) = answer.json()
        assert got[SCORE] == pytest.approx(want[SCORE], abs=1e-12)
        assert got["missing_features"] == want["missing_features"]
        assert got["model_version"] == "1"
    refused = requests.post(f"{server}/predict_batch", json=body(), timeout=30)
    assert 400 <= refused.status_code < 500, refused.text


@pytest.mark.parametrize(
    ("sent", "field"),
    [
        (body(), ITEMS),
        (body({**EXAMPLE, "meter_id": "s1-m1"}), "meter_id"),
        (body({**EXAMPLE, "reading_at": "1850-03-10T08:00:00+00:00"}), "reading_at"),
        (body({**EXAMPLE, "reading_at": "2024-03-10T08:00:00"}), "reading_at"),
        (body({k: v for k, v in EXAMPLE.items() if k != "facility_id"}), "facility_id"),
        (body(*[EXAMPLE] * 1001), ITEMS),
        (body({**EXAMPLE, "gate": "B12"}), "gate"),
    ],
    ids=[
        "empty",
        "bad-id",
        "implausible-time",
        "no-timezone",
        "missing-field",
        "too-many",
        "extra-field",
    ],
)
def test_client_mistakes_get_a_4xx_naming_the_field(server: str, sent: dict, field: str) -> None:
    response = requests.post(f"{server}/predict", json=sent, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert field in response.text


def test_a_body_that_is_not_json_is_refused(server: str) -> None:
    response = requests.post(
        f"{server}/predict",
        data=b"not json",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert 400 <= response.status_code < 500


def test_health_and_metrics(server: str) -> None:
    assert requests.get(f"{server}/livez", timeout=5).status_code == 200
    requests.post(f"{server}/predict", json=body(EXAMPLE), timeout=30)
    metrics = requests.get(f"{server}/metrics", timeout=5).text
    assert f'{NAMES.metric_prefix}_predictions_total{{model_version="1"}}' in metrics
    # latency histograms, per endpoint
    assert any(
        line.startswith("bentoml_service_request_duration_seconds_bucket{")
        and 'endpoint="/predict"' in line
        for line in metrics.splitlines()
    ), metrics[:2000]


def in_process_service(
    root: Path, monkeypatch: pytest.MonkeyPatch, **overrides: object
) -> PredictionService:
    """The service class built in this process, as a worker builds it, over the lake at `root`."""
    from serving.__main__ import champion_model_tag

    monkeypatch.setenv(
        "MLOPS_OVERRIDES", json.dumps(_deep_merge(platform_overrides(root), overrides))
    )
    monkeypatch.setenv(NAMES.model_tag_variable, champion_model_tag(platform_settings(root)))
    service = PredictionService()
    gc.unfreeze()  # the service freezes the worker's heap; this test process is not a worker
    return service


def test_the_monitor_s_newest_decision_is_on_metrics(
    server: str, platform_trained_root: Path
) -> None:
    """A decision the monitor records is on /metrics at the worker's next refresh."""
    from monitoring import decisions

    decided = {
        "window_from": "2024-03-16",
        "window_to": "2024-03-31",
        "rows": 2000,
        "champion_version": "1",
        "drift": [{"column": METER_FEATURE, "value": 0.8125, "drifted": True}],
        "score_drift": None,
        "live": {"1": {"rows": 1500.0, "roc_auc": 0.6875}},
        "shadow": {},
        "decision": "retrain",
        "drifted_share": 0.25,
    }
    monitoring = platform_settings(platform_trained_root).paths.monitoring
    written = Path(decisions.record(monitoring, decided))
    prefix = NAMES.metric_prefix
    try:
        wanted = {
            f"{prefix}_monitor_drifted_share": "0.25",
            f'{prefix}_monitor_input_drift{{input="{METER_FEATURE}"': "0.8125",
            f'{prefix}_monitor_live{{metric="roc_auc",model_version="1"': "0.6875",
            f'{prefix}_monitor_decision{{decision="retrain"': "1.0",
        }
        deadline, missing = time.monotonic() + 30, dict(wanted)
        while missing and time.monotonic() < deadline:
            lines = requests.get(f"{server}/metrics", timeout=5).text.splitlines()
            missing = {
                name: value
                for name, value in wanted.items()
                if not any(line.startswith(name) and line.endswith(f" {value}") for line in lines)
            }
            time.sleep(0.5)
        assert not missing, [line for line in lines if "monitor" in line]
    finally:
        written.unlink()


def test_an_explained_prediction_adds_up_to_the_models_output(
    server: str, platform_trained_root: Path
) -> None:
    plain = requests.post(f"{server}/predict", json=body(EXAMPLE), timeout=30).json()
    assert plain["predictions"][0]["explanation"] is None
    asked = requests.post(
        f"{server}/predict", json={**body(EXAMPLE, EXAMPLE), "explain": True}, timeout=30
    )
    assert asked.status_code == 200, asked.text
    tracker = Tracker(platform_settings(platform_trained_root))
    model = tracker.load_model(tracker.alias(CHAMPION))
    for prediction in asked.json()["predictions"]:
        explanation = prediction["explanation"]
        shown = explanation["contributions"]
        assert 1 <= len(shown) <= 5
        assert all(item["feature"] in model.features for item in shown)
        added = explanation["base"] + sum(i["contribution"] for i in shown) + explanation["others"]
        assert math.isclose(added, explanation["total"], abs_tol=1e-9)
        # LightGBM's contributions add up to the log-odds; the answer is its logistic, through
        # the model's calibration map when it has one.
        assert explanation["output"] == "log-odds"
        probability = 1 / (1 + math.exp(-explanation["total"]))
        mapped = getattr(model, "calibration", None)
        if mapped is not None:
            probability = float(mapped.apply(np.array([probability]))[0])
        assert math.isclose(prediction[SCORE], probability, abs_tol=1e-9)
        assert prediction[SCORE] == plain["predictions"][0][SCORE]


def test_logs_are_json_lines_carrying_the_model_version(served: tuple[str, Path]) -> None:
    url, log_path = served
    answered = requests.post(
        f"{url}/predict", json=body(EXAMPLE), headers={"X-Request-ID": "4242"}, timeout=30
    )
    answered.raise_for_status()
    refused = requests.post(
        f"{url}/predict",
        json=body({**EXAMPLE, "meter_id": "s1-m1"}),
        headers={"X-Request-ID": "4343"},
        timeout=30,
    )
    assert refused.status_code == 400
    time.sleep(0.5)  # a line is written after the response
    worker_lines = [line for line in log_path.read_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in worker_lines]
    assert records, log_path.read_text()[-2000:]
    assert {record["model_version"] for record in records} == {"1"}
    # A request that succeeds writes no line by default (`serving.access_log`): its
    # predictions are in the prediction log, its counts and latency on /metrics.
    assert not [r for r in records if r["request_id"] == 4242], records[-5:]
    assert not [r for r in records if r["logger"] == "bentoml.access"], records[-5:]
    # a client's mistake is one WARNING naming the field, not an ERROR with a traceback,
    # carrying the client's request id (not traced, still identified)
    mistakes = [r for r in records if r["message"].startswith("client mistake on /predict")]
    assert mistakes and mistakes[-1]["level"] == "WARNING", records[-5:]
    assert mistakes[-1]["request_id"] == 4343, mistakes[-1]
    assert f"{ITEMS}.0.meter_id" in mistakes[-1]["message"]
    assert not [r for r in records if "ValidationError" in r.get("exc_info", "")]
    # nothing the worker says about a request is left as plain text
    assert not [
        line
        for line in log_path.read_text().splitlines()
        if "/predict" in line and not line.startswith("{")
    ]


def test_access_lines_are_bentomls_own_switched_by_a_setting(
    platform_trained_root: Path,
) -> None:
    """`serving.access_log` is BentoML's access log (on: a JSON line per request, with its
    request id), read from the settings the service is built with."""
    enabled = {}
    for value in (True, False):
        overrides = {**platform_overrides(platform_trained_root), "serving": {"access_log": value}}
        shown = subprocess.run(
            [
                sys.executable,
                "-c",
                "import json, serving.service as s; "
                "print(json.dumps(s.PredictionService.config['logging']))",
            ],
            env={**os.environ, OVERRIDES_VARIABLE: json.dumps(overrides)},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        enabled[value] = json.loads(shown.stdout.strip().splitlines()[-1])["access"]["enabled"]
    assert enabled == {True: True, False: False}


def test_the_online_store_down_means_not_ready_and_a_503(
    platform_trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store nobody answers on: the service starts, says it is not ready, and answers 503
    (counted), never a 500 and never a hang."""
    down = {"features": {"online_store": {"type": "redis", "connection_string": "127.0.0.1:9"}}}
    service = in_process_service(platform_trained_root, monkeypatch, **down)
    # redis-py retries a refused connection three times with backoff: about 7 s, never a hang
    started = time.monotonic()
    assert service.__is_ready__() is False
    assert time.monotonic() - started < 15
    started = time.monotonic()
    with pytest.raises(bentoml.exceptions.ServiceUnavailable, match="online feature store"):
        service.predict([Item.model_validate(EXAMPLE)])
    assert time.monotonic() - started < 15


@contextlib.contextmanager
def private_redis(port: int, folder: Path) -> Iterator[subprocess.Popen]:
    """A Redis server of this test's own (the machine's one is shared: never stopped here)."""
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=15)


def store_failures() -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        f"{NAMES.metric_prefix}_online_store_failures_total", {"model_version": "1"}
    )
    return value or 0.0


def test_the_online_store_going_down_while_serving_then_coming_back(
    platform_trained_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Redis stops under a running service: not ready and a counted 503 within a bounded time,
    never a 500 or a hang; when it is back, the same service is ready and answers again."""
    port = free_port()
    store = {
        "type": "redis",
        "connection_string": f"127.0.0.1:{port},socket_connect_timeout=1,socket_timeout=1",
    }
    items = [Item.model_validate(EXAMPLE)]
    with private_redis(port, tmp_path):
        service = in_process_service(
            platform_trained_root, monkeypatch, features={"online_store": store}
        )
        assert service.__is_ready__() is True
        assert service.predict(items).model_version == "1"
    failures = store_failures()
    started = time.monotonic()
    assert service.__is_ready__() is False
    with pytest.raises(bentoml.exceptions.ServiceUnavailable, match="online feature store"):
        service.predict(items)
    assert time.monotonic() - started < 30  # bounded: redis-py's retries, then the answer
    assert store_failures() == failures + 1
    with private_redis(port, tmp_path):
        assert service.__is_ready__() is True
        assert service.predict(items).model_version == "1"


def test_in_process_predictions_flag_what_the_store_lacks(
    platform_trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = in_process_service(platform_trained_root, monkeypatch)
    assert service.__is_ready__() is True
    known = Item.model_validate(EXAMPLE)
    unknown = Item.model_validate(UNKNOWN)
    answer = service.predict([known, unknown])
    assert answer.model_version == "1"
    first, second = answer.predictions
    assert getattr(first, DECISION) == (getattr(first, SCORE) >= first.threshold)
    stored = set(STORED.values())
    assert stored <= set(second.missing_features)
    assert not stored & set(first.missing_features)


def test_an_online_store_with_nothing_materialized_is_not_ready(
    platform_trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that answers but holds none of the champion's features (materialize never ran
    into it) would serve every prediction with all stored features missing: not ready."""
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

    root = tmp_path / "never-materialized"
    shutil.copytree(platform_trained_root, root, ignore=shutil.ignore_patterns("serve-*.log"))
    registry = Path(platform_settings(root).features.registry["path"])
    proto = RegistryProto()
    proto.ParseFromString(registry.read_bytes())
    for view in proto.feature_views:
        del view.meta.materialization_intervals[:]
    registry.write_bytes(proto.SerializeToString())

    service = in_process_service(root, monkeypatch)
    assert service.__is_ready__() is False
    assert set(service.unmaterialized()) == set(STORED)
    # and a request that reaches it anyway (load balancers check /livez) is refused, not
    # answered with every stored feature missing
    with pytest.raises(bentoml.exceptions.ServiceUnavailable, match="holds no features yet"):
        service.predict([Item.model_validate(EXAMPLE)])
    # the trained workspace, materialized, is ready
    assert in_process_service(platform_trained_root, monkeypatch).__is_ready__() is True


def test_sigterm_under_load_finishes_requests_in_flight_then_refuses(
    platform_trained_root: Path, tmp_path: Path
) -> None:
    """...and the prediction log, which writes only every hour here, is written on SIGTERM:
    one record per answered prediction, with the id, score and version the client got, by the
    worker's writer process, which then exits with it."""
    big = body(*[EXAMPLE] * 1000)
    overrides = _deep_merge(
        platform_overrides(platform_trained_root),
        {
            "paths": {"prediction_log": str(tmp_path / "prediction_log")},
            "monitoring": {"prediction_log": {"flush_interval_s": 3600, "flush_rows": 10**6}},
        },
    )
    with (
        serving(platform_trained_root, overrides) as (url, process, log_path),
        ThreadPoolExecutor(6) as pool,
    ):
        in_flight = [
            pool.submit(requests.post, f"{url}/predict", json=big, timeout=60) for _ in range(6)
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and in_progress(url) < 2:
            time.sleep(0.02)
        assert in_progress(url) >= 2, "the load never reached the server"
        writers = [
            child
            for child in psutil.Process(process.pid).children(recursive=True)
            if "monitoring.log_writer" in " ".join(child.cmdline())
        ]
        assert writers, "no prediction log writer process under the server"
        process.send_signal(signal.SIGTERM)
        answers = [future.result() for future in in_flight]
        assert [a.status_code for a in answers] == [200] * 6, [a.text[:200] for a in answers]
        assert all(len(a.json()["predictions"]) == 1000 for a in answers)
        assert process.wait(timeout=60) == 0, log_path.read_text()[-2000:]
        assert not [w.pid for w in writers if w.is_running()], "a writer outlived the server"
        with pytest.raises(requests.ConnectionError):
            requests.post(f"{url}/predict", json=body(EXAMPLE), timeout=5)
    from monitoring import prediction_log as pl

    table = pl.read_log(str(tmp_path / "prediction_log"))
    assert table is not None, "nothing was written on SIGTERM"
    logged = {row[pl.PREDICTION_ID]: row for row in table.to_pylist()}
    answered = [p for a in answers for p in a.json()["predictions"]]
    assert len(logged) == len(answered) == 6000
    # the request feature as the model saw it: the reading's hour on the facility's clock
    local_hour = float(pd.Timestamp(EXAMPLE["reading_at"]).hour)
    for prediction in answered:
        row = logged[prediction["prediction_id"]]
        assert row[pl.SCORE] == prediction[SCORE]
        assert row[pl.DECISION] == prediction[DECISION]
        assert row[pl.MODEL_VERSION] == prediction["model_version"]
        assert row[pl.MISSING] == prediction["missing_features"]
        assert row[pl.SOURCE] == "service"
        assert row[pl.input_column("local_hour")] == local_hour


def test_past_capacity_requests_are_refused_with_retry_after_and_counted(
    platform_trained_root: Path,
) -> None:
    """With a queue budget of 1 ms, a request that finds another in flight is refused at
    once (503, Retry-After), counted in /metrics; the request in flight is answered."""
    big = body(*[EXAMPLE] * 1000)
    overrides = _deep_merge(
        platform_overrides(platform_trained_root),
        {"serving": {"max_queue_ms": 1, "overload_queue_ms": 1}},
    )
    with (
        serving(platform_trained_root, overrides) as (url, _, _log),
        ThreadPoolExecutor(6) as pool,
    ):
        answers = list(
            pool.map(lambda _: requests.post(f"{url}/predict", json=big, timeout=60), range(6))
        )
        statuses = [a.status_code for a in answers]
        assert 200 in statuses and 503 in statuses, statuses
        assert set(statuses) == {200, 503}, [a.text[:200] for a in answers]
        refused = [a for a in answers if a.status_code == 503]
        assert all(a.headers["retry-after"] == "1" for a in refused)
        assert all("at capacity" in a.json()["error"] for a in refused)
        metrics = requests.get(f"{url}/metrics", timeout=5).text
        counted = [
            line
            for line in metrics.splitlines()
            if line.startswith(f"{NAMES.metric_prefix}_refused_total ")
        ]
        assert counted and float(counted[0].split()[1]) == len(refused), counted
        # and the service goes on answering once the burst is over
        assert requests.post(f"{url}/predict", json=body(EXAMPLE), timeout=30).ok


def in_progress(url: str) -> float:
    """Requests the server is handling now, from its own Prometheus gauge."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("bentoml_service_request_in_progress{") and 'endpoint="/predict"' in line
    )


def test_online_vectors_equal_offline_vectors(
    platform_trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No training/serving skew: the service builds, from the online store, exactly the vector
    the point-in-time join builds offline for the same rows at the same moment.

    The online store keeps each entity's newest values only, so each view is compared at a
    moment just after its newest event (within its TTL), where both sides must agree.
    """
    from features.definitions import feature_table_path
    from features.store import feature_store
    from pipelines.adapters.storage import StorageLayout
    from pipelines.fit import feature_frame

    settings = platform_settings(platform_trained_root)
    service = in_process_service(platform_trained_root, monkeypatch)
    store = feature_store(settings)
    examples = PLATFORM.examples

    silver = StorageLayout(settings.paths).read_silver_columns(
        examples.table, list(examples.columns)
    )
    assert silver is not None
    sample = silver.sort_values(examples.row_id).iloc[::97].head(15)
    request_features = [f.name for f in PLATFORM.request.features]
    for declared in PLATFORM.views:
        view, fields = declared.name, [f.name for f in declared.features]
        newest = pd.read_parquet(feature_table_path(settings, view), columns=[EVENT_TIMESTAMP])[
            EVENT_TIMESTAMP
        ].max()
        # the rows as of that moment: predicted then (their instants moved with it)
        rows = examples.entity_frame(sample)
        lead = rows["reading_utc"] - rows[EVENT_TIMESTAMP]
        rows[EVENT_TIMESTAMP] = newest + pd.Timedelta(minutes=1)
        rows["reading_utc"] = rows[EVENT_TIMESTAMP] + lead
        rows[examples.label] = 0
        offline = feature_frame(store, settings, rows).set_index(examples.row_id).sort_index()
        online, _ = service.vectors(rows.drop(columns=[examples.split_column, examples.label]))
        online.index = rows[examples.row_id]
        columns = [*request_features, *fields]
        pd.testing.assert_frame_equal(
            online[columns].sort_index(), offline[columns].sort_index(), obj=view
        )
        # each view is really compared on values, not only on missing ones
        assert online[fields].notna().to_numpy().any(), view


def test_batch_predict_scores_a_day_like_the_service(
    platform_trained_root: Path, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.store import feature_store
    from pipelines.adapters.storage import StorageLayout
    from pipelines.batch_predict import predictions_dir, rows_to_score
    from pipelines.fit import feature_frame

    settings = platform_settings(platform_trained_root)
    row_id = PLATFORM.examples.row_id
    results = run_chain(settings, ("batch-predict",), spark=spark, handoff={"period": DAY})
    assert results[0].ok, problems(results)
    scored = pd.read_parquet(predictions_dir(settings, DAY)).sort_values(row_id)
    layout = StorageLayout(settings.paths)
    silver = layout.read_silver_columns(PLATFORM.examples.table, ["date"])
    assert silver is not None
    assert len(scored) == (silver["date"].astype(str) == DAY).sum() > 0
    assert set(scored["model_version"]) == {"1"}
    assert scored[SCORE].between(0, 1).all()
    summary = json.loads((Path(predictions_dir(settings, DAY)) / "_summary.json").read_text())
    assert (summary["rows"], summary["model_version"]) == (len(scored), "1")

    # The same rows and feature values through the service's own model give the same scores.
    service = in_process_service(platform_trained_root, monkeypatch)
    rows = rows_to_score(spark, layout, PLATFORM, DAY)
    vectors = feature_frame(feature_store(settings), settings, rows).sort_values(row_id)
    online_scores = service.model.probabilities(vectors)
    assert list(vectors[row_id]) == list(scored[row_id])
    assert list(online_scores) == pytest.approx(list(scored[SCORE]), abs=1e-12)


def test_batch_predict_refuses_a_bad_period(platform_trained_root: Path, spark) -> None:
    results = run_chain(
        platform_settings(platform_trained_root),
        ("batch-predict",),
        spark=spark,
        handoff={"period": "2024-13"},
    )
    assert not results[0].ok and "--date YYYY-MM-DD or --month YYYY-MM" in problems(results)


def test_batch_predict_with_the_spark_offline_store_scores_the_same(
    platform_trained_root: Path, spark, tmp_path: Path
) -> None:
    """The aws profile joins point-in-time in Spark (on EMR), not DuckDB: the same rows get
    the same scores either way."""
    from pipelines.batch_predict import predictions_dir

    root = tmp_path / "spark-store"
    shutil.copytree(platform_trained_root, root, ignore=shutil.ignore_patterns("serve-*.log"))
    duckdb_settings = platform_settings(root)
    spark_settings = duckdb_settings.with_overrides(
        {"features": {"offline_store": {"type": "spark"}}}
    )
    row_id = PLATFORM.examples.row_id
    for current in (duckdb_settings, spark_settings):
        # `features` registers the repository again, with Spark sources for the Spark store
        results = run_chain(
            current, ("features", "batch-predict"), spark=spark, handoff={"period": DAY}
        )
        assert all(r.ok for r in results), problems(results)
        scored = pd.read_parquet(predictions_dir(current, DAY)).sort_values(row_id)
        if current is duckdb_settings:
            expected = scored
    assert len(scored) > 0
    assert list(scored[row_id]) == list(expected[row_id])
    assert list(scored[SCORE]) == pytest.approx(list(expected[SCORE]), abs=1e-12)


def test_a_missing_model_stops_the_service_with_what_to_do(
    platform_trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.service import ModelUnavailable

    missing = f"{NAMES.registered_model}:doesnotexist"
    monkeypatch.setenv("MLOPS_OVERRIDES", json.dumps(platform_overrides(platform_trained_root)))
    monkeypatch.setenv(NAMES.model_tag_variable, missing)
    with pytest.raises(ModelUnavailable, match=rf"{missing} is not in the BentoML"):
        PredictionService()


def test_a_corrupt_model_file_stops_the_service_with_a_message(
    platform_trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The champion's model file truncated in the store: the service refuses to start (so it
    never becomes ready) and says which model and what to do; the file is put back after."""
    from serving.__main__ import champion_model_tag
    from serving.service import ModelUnavailable

    tag = champion_model_tag(platform_settings(platform_trained_root))
    (model_file,) = Path(bentoml.models.get(tag).path_of("mlflow_model")).glob("model.lgb")
    intact = model_file.read_bytes()
    monkeypatch.setenv("MLOPS_OVERRIDES", json.dumps(platform_overrides(platform_trained_root)))
    monkeypatch.setenv(NAMES.model_tag_variable, tag)
    try:
        model_file.write_bytes(intact[: len(intact) // 3])
        with pytest.raises(ModelUnavailable, match=rf"model {tag}: .* the artifact is corrupt"):
            PredictionService()
    finally:
        model_file.write_bytes(intact)
    assert model_file.read_bytes() == intact


def test_logs_reports_and_run_records_hold_no_secret(
    served: tuple[str, Path], platform_trained_root: Path
) -> None:
    """Whatever the chain and the service wrote (logs, gate results, Data Docs, the model
    report, MLflow's run records) passes the secrets scan (see tests/secrets_scan.py)."""
    text = {".log", ".json", ".html", ".yaml", ".yml", ".txt", ".md", ".csv", ".ini"}
    outputs = [p for p in platform_trained_root.rglob("*") if p.is_file() and p.suffix in text]
    assert {p.suffix for p in outputs} >= {".log", ".json", ".html"}
    assert findings([*outputs, served[1]], ignore=ENTROPY) == []


def test_the_release_s_smoke_request_passes_on_a_good_service_and_names_what_fails(
    server: str,
) -> None:
    """`python -m serving.smoke <url>`, which the release runs after rolling the service: the
    use case's example request gets a score; a wrong answer or no readiness is a failure."""
    from serving import smoke

    sent, items_field, score_field = smoke.example_request(PLATFORM_USECASE)
    assert (items_field, score_field) == (ITEMS, SCORE) and len(sent[ITEMS]) == 1
    answer = smoke.smoke(server, sent, score_field, ready_within_s=30, poll_s=0.2)
    assert answer["model_version"] == "1"
    assert smoke.main([server, "--ready-within", "30"]) == 0

    with pytest.raises(smoke.SmokeFailed, match="without scores"):
        smoke.smoke(server, sent, "no_such_field", ready_within_s=30)
    with pytest.raises(smoke.SmokeFailed, match=r"/predict answered 4\d\d"):
        smoke.smoke(server, body(), score_field, ready_within_s=30)
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(smoke.SmokeFailed, match="did not answer 200 within"):
        smoke.smoke(closed, sent, score_field, ready_within_s=0.3, poll_s=0.1, timeout_s=0.5)
