"""`python -m serving` for real: a `bentoml serve` process over the champion trained on the
slice, checked over HTTP for readiness, good answers and 4xx for client mistakes."""

from __future__ import annotations

import contextlib
import gc
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import pandas as pd
import pytest
import requests

from configs.settings import _deep_merge
from pipelines.chain import run_chain
from serving.service import PredictionService
from tests.conftest import settings_for, slice_overrides
from tests.lake_helpers import problems
from tests.secrets_scan import ENTROPY, findings
from tests.serving_helpers import FLIGHT, free_port, serving
from usecases import load as load_usecase
from usecases.flight_delay.request import Flight


def test_a_good_request_gets_probabilities_from_the_champion(server: str) -> None:
    unknown = {**FLIGHT, "tailnum": "N00000", "carrier": "AA"}
    response = requests.post(f"{server}/predict", json={"flights": [FLIGHT, unknown]}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "1"
    first, second = body["predictions"]
    assert 0.0 <= first["probability_late"] <= 1.0
    assert first["late"] == (first["probability_late"] >= first["threshold"])
    assert (
        "tail_arr_delay_last" in second["missing_features"]
    )  # an aircraft the store has never seen


def test_the_batching_endpoint_answers_like_predict(server: str) -> None:
    """/predict_batch (adaptive batching) scores each flight exactly as /predict does, also
    when concurrent requests are merged into one batch."""
    flights = [FLIGHT, {**FLIGHT, "tailnum": "N00000", "carrier": "AA"}]
    expected = requests.post(f"{server}/predict", json={"flights": flights}, timeout=30).json()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(
                lambda flight: requests.post(
                    f"{server}/predict_batch", json={"flights": [flight]}, timeout=30
                ),
                flights * 4,
            )
        )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    for answer, want in zip(answers, expected["predictions"] * 4, strict=True):
        (got,) = answer.json()
        assert got["probability_late"] == pytest.approx(want["probability_late"], abs=1e-12)
        assert got["missing_features"] == want["missing_features"]
        assert got["model_version"] == "1"
    refused = requests.post(f"{server}/predict_batch", json={"flights": []}, timeout=30)
    assert 400 <= refused.status_code < 500, refused.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"flights": []}, "flights"),
        ({"flights": [{**FLIGHT, "carrier": "u"}]}, "carrier"),
        ({"flights": [{**FLIGHT, "distance": -5}]}, "distance"),
        (
            {"flights": [{**FLIGHT, "scheduled_departure": "2013-03-10T08:00:00"}]},
            "scheduled_departure",
        ),
        ({"flights": [{k: v for k, v in FLIGHT.items() if k != "origin"}]}, "origin"),
        ({"flights": [FLIGHT] * 1001}, "flights"),
        ({"flights": [{**FLIGHT, "gate": "B12"}]}, "gate"),
    ],
    ids=[
        "empty",
        "bad-carrier",
        "negative-distance",
        "no-timezone",
        "missing-origin",
        "too-many",
        "extra-field",
    ],
)
def test_client_mistakes_get_a_4xx_naming_the_field(server: str, body: dict, field: str) -> None:
    response = requests.post(f"{server}/predict", json=body, timeout=30)
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
    requests.post(f"{server}/predict", json={"flights": [FLIGHT]}, timeout=30)
    metrics = requests.get(f"{server}/metrics", timeout=5).text
    assert 'flight_delay_predictions_total{model_version="1"}' in metrics
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

    monkeypatch.setenv("MLOPS_OVERRIDES", json.dumps(_deep_merge(slice_overrides(root), overrides)))
    monkeypatch.setenv("FLIGHT_DELAY_MODEL_TAG", champion_model_tag(settings_for(root)))
    service = PredictionService()
    gc.unfreeze()  # the service freezes the worker's heap; this test process is not a worker
    return service


def test_the_monitor_s_newest_decision_is_on_metrics(server: str, trained_root: Path) -> None:
    """A decision the monitor records is on /metrics at the worker's next refresh."""
    from monitoring import decisions

    decided = {
        "window_from": "2013-03-01",
        "window_to": "2013-03-31",
        "rows": 2000,
        "champion_version": "1",
        "drift": [{"column": "weather_visib", "value": 0.8125, "drifted": True}],
        "score_drift": None,
        "live": {"1": {"rows": 1500.0, "roc_auc": 0.6875}},
        "shadow": {},
        "decision": "retrain",
        "drifted_share": 0.25,
    }
    written = Path(decisions.record(settings_for(trained_root).paths.monitoring, decided))
    try:
        wanted = {
            "flight_delay_monitor_drifted_share": "0.25",
            'flight_delay_monitor_input_drift{input="weather_visib"': "0.8125",
            'flight_delay_monitor_live{metric="roc_auc",model_version="1"': "0.6875",
            'flight_delay_monitor_decision{decision="retrain"': "1.0",
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


def test_logs_are_json_lines_carrying_the_model_version(served: tuple[str, Path]) -> None:
    url, log_path = served
    requests.post(f"{url}/predict", json={"flights": [FLIGHT]}, timeout=30).raise_for_status()
    refused = requests.post(
        f"{url}/predict", json={"flights": [{**FLIGHT, "distance": -1}]}, timeout=30
    )
    assert refused.status_code == 400
    time.sleep(0.5)  # the access line is written after the response
    worker_lines = [line for line in log_path.read_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in worker_lines]
    assert records, log_path.read_text()[-2000:]
    assert {record["model_version"] for record in records} == {"1"}
    access = [r for r in records if r["logger"] == "bentoml.access" and "/predict" in r["message"]]
    ours = [r for r in records if r["logger"] == "serving" and r["message"].startswith("predicted")]
    assert access and ours, records[-5:]
    assert ours[-1]["items"] == 1 and ours[-1]["level"] == "INFO"
    # the prediction's own line and its access line carry the same request id (not traced,
    # still identified)
    assert isinstance(ours[-1]["request_id"], int), ours[-1]
    assert ours[-1]["request_id"] in {r["request_id"] for r in access}, ours[-1]
    # a client's mistake is one WARNING naming the field, not an ERROR with a traceback
    mistakes = [r for r in records if r["message"].startswith("client mistake on /predict")]
    assert mistakes and mistakes[-1]["level"] == "WARNING", records[-5:]
    assert "flights.0.distance" in mistakes[-1]["message"]
    assert not [r for r in records if "ValidationError" in r.get("exc_info", "")]
    # nothing the worker says about a request is left as plain text
    assert not [
        line
        for line in log_path.read_text().splitlines()
        if "/predict" in line and not line.startswith("{")
    ]


def test_the_online_store_down_means_not_ready_and_a_503(
    trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store nobody answers on: the service starts, says it is not ready, and answers 503
    (counted), never a 500 and never a hang."""
    down = {"features": {"online_store": {"type": "redis", "connection_string": "127.0.0.1:9"}}}
    service = in_process_service(trained_root, monkeypatch, **down)
    # redis-py retries a refused connection three times with backoff: about 7 s, never a hang
    started = time.monotonic()
    assert service.__is_ready__() is False
    assert time.monotonic() - started < 15
    started = time.monotonic()
    with pytest.raises(bentoml.exceptions.ServiceUnavailable, match="online feature store"):
        service.predict([Flight.model_validate(FLIGHT)])
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
        "flight_delay_online_store_failures_total", {"model_version": "1"}
    )
    return value or 0.0


def test_the_online_store_going_down_while_serving_then_coming_back(
    trained_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Redis stops under a running service: not ready and a counted 503 within a bounded time,
    never a 500 or a hang; when it is back, the same service is ready and answers again."""
    port = free_port()
    store = {
        "type": "redis",
        "connection_string": f"127.0.0.1:{port},socket_connect_timeout=1,socket_timeout=1",
    }
    flight = [Flight.model_validate(FLIGHT)]
    with private_redis(port, tmp_path):
        service = in_process_service(trained_root, monkeypatch, features={"online_store": store})
        assert service.__is_ready__() is True
        assert service.predict(flight).model_version == "1"
    failures = store_failures()
    started = time.monotonic()
    assert service.__is_ready__() is False
    with pytest.raises(bentoml.exceptions.ServiceUnavailable, match="online feature store"):
        service.predict(flight)
    assert time.monotonic() - started < 30  # bounded: redis-py's retries, then the answer
    assert store_failures() == failures + 1
    with private_redis(port, tmp_path):
        assert service.__is_ready__() is True
        assert service.predict(flight).model_version == "1"


def test_in_process_predictions_flag_what_the_store_lacks(
    trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.definitions import feature_table_path

    service = in_process_service(trained_root, monkeypatch)
    assert service.__is_ready__() is True
    # A minute after the newest weather reading, from that airport, on a plane whose newest
    # history is not later: the online store's values are then the ones the flight may use.
    settings = settings_for(trained_root)
    weather = pd.read_parquet(feature_table_path(settings, "origin_weather"))
    reading = weather.loc[weather["event_timestamp"].idxmax()]
    history = pd.read_parquet(feature_table_path(settings, "aircraft_delay_history"))
    newest = history.groupby("tailnum")["event_timestamp"].max()
    plane = newest[newest <= reading["event_timestamp"]].idxmax()
    known = Flight.model_validate(
        {
            **FLIGHT,
            "tailnum": plane,
            "origin": reading["origin"],
            "scheduled_departure": (
                reading["event_timestamp"] + pd.Timedelta(minutes=1)
            ).isoformat(),
        }
    )
    unknown = Flight.model_validate({**FLIGHT, "tailnum": None, "origin": "XYZ"})
    answer = service.predict([known, unknown])
    assert answer.model_version == "1"
    first, second = answer.predictions
    assert first.late == (first.probability_late >= first.threshold)
    assert {"tail_arr_delay_last", "weather_temp"} <= set(second.missing_features)
    assert not {"tail_arr_delay_last", "weather_temp"} & set(first.missing_features)


def test_an_online_store_with_nothing_materialized_is_not_ready(
    trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that answers but holds none of the champion's features (materialize never ran
    into it) would serve every prediction with all stored features missing: not ready."""
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

    root = tmp_path / "never-materialized"
    shutil.copytree(trained_root, root, ignore=shutil.ignore_patterns("serve-*.log"))
    registry = Path(settings_for(root).features.registry["path"])
    proto = RegistryProto()
    proto.ParseFromString(registry.read_bytes())
    for view in proto.feature_views:
        del view.meta.materialization_intervals[:]
    registry.write_bytes(proto.SerializeToString())

    service = in_process_service(root, monkeypatch)
    assert service.__is_ready__() is False
    views = {declared.name for declared in load_usecase("flight_delay").views}
    assert set(service.unmaterialized()) == views
    # and a request that reaches it anyway (load balancers check /livez) is refused, not
    # answered with every stored feature missing
    with pytest.raises(bentoml.exceptions.ServiceUnavailable, match="holds no features yet"):
        service.predict([Flight.model_validate(FLIGHT)])
    # the trained workspace, materialized, is ready
    assert in_process_service(trained_root, monkeypatch).__is_ready__() is True


def test_sigterm_under_load_finishes_requests_in_flight_then_refuses(
    trained_root: Path, tmp_path: Path
) -> None:
    """...and the prediction log, which writes only every hour here, is written on SIGTERM:
    one record per answered prediction, with the id, score and version the client got."""
    big = {"flights": [FLIGHT] * 1000}
    overrides = _deep_merge(
        slice_overrides(trained_root),
        {
            "paths": {"prediction_log": str(tmp_path / "prediction_log")},
            "monitoring": {"prediction_log": {"flush_interval_s": 3600, "flush_rows": 10**6}},
        },
    )
    with (
        serving(trained_root, overrides) as (url, process, log_path),
        ThreadPoolExecutor(6) as pool,
    ):
        in_flight = [
            pool.submit(requests.post, f"{url}/predict", json=big, timeout=60) for _ in range(6)
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and in_progress(url) < 2:
            time.sleep(0.02)
        assert in_progress(url) >= 2, "the load never reached the server"
        process.send_signal(signal.SIGTERM)
        answers = [future.result() for future in in_flight]
        assert [a.status_code for a in answers] == [200] * 6, [a.text[:200] for a in answers]
        assert all(len(a.json()["predictions"]) == 1000 for a in answers)
        assert process.wait(timeout=60) == 0, log_path.read_text()[-2000:]
        with pytest.raises(requests.ConnectionError):
            requests.post(f"{url}/predict", json={"flights": [FLIGHT]}, timeout=5)
    from monitoring import prediction_log as pl

    table = pl.read_log(str(tmp_path / "prediction_log"))
    assert table is not None, "nothing was written on SIGTERM"
    logged = {row[pl.PREDICTION_ID]: row for row in table.to_pylist()}
    answered = [p for a in answers for p in a.json()["predictions"]]
    assert len(logged) == len(answered) == 6000
    for prediction in answered:
        row = logged[prediction["prediction_id"]]
        assert row[pl.SCORE] == prediction["probability_late"]
        assert row[pl.DECISION] == prediction["late"]
        assert row[pl.MODEL_VERSION] == prediction["model_version"]
        assert row[pl.MISSING] == prediction["missing_features"]
        assert row[pl.SOURCE] == "service"
        assert row[pl.input_column("distance")] == FLIGHT["distance"]  # as the model saw it


def test_past_capacity_requests_are_refused_with_retry_after_and_counted(
    trained_root: Path,
) -> None:
    """With a queue budget of 1 ms, a request that finds another in flight is refused at
    once (503, Retry-After), counted in /metrics; the request in flight is answered."""
    big = {"flights": [FLIGHT] * 1000}
    overrides = _deep_merge(slice_overrides(trained_root), {"serving": {"max_queue_ms": 1}})
    with serving(trained_root, overrides) as (url, _, _log), ThreadPoolExecutor(6) as pool:
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
            line for line in metrics.splitlines() if line.startswith("flight_delay_refused_total ")
        ]
        assert counted and float(counted[0].split()[1]) == len(refused), counted
        # and the service goes on answering once the burst is over
        assert requests.post(f"{url}/predict", json={"flights": [FLIGHT]}, timeout=30).ok


def in_progress(url: str) -> float:
    """Requests the server is handling now, from its own Prometheus gauge."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("bentoml_service_request_in_progress{") and 'endpoint="/predict"' in line
    )


def test_online_vectors_equal_offline_vectors(
    trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No training/serving skew: the service builds, from the online store, exactly the vector
    the point-in-time join builds offline for the same flights at the same moment.

    The online store keeps each entity's newest values only, so each view is compared at a
    moment just after its newest event (within its TTL), where both sides must agree.
    """
    from features.definitions import feature_table_path
    from features.store import feature_store
    from pipelines.fit import feature_frame
    from usecases import load

    settings = settings_for(trained_root)
    service = in_process_service(trained_root, monkeypatch)
    store = feature_store(settings)

    silver = pd.read_parquet(Path(settings.paths.lake) / "silver" / "flights")
    sample = (
        silver[~silver["cancelled"] & silver["tailnum"].notna()]
        .sort_values("flight_id")
        .iloc[::20]
        .head(15)
    )
    usecase = load(settings.usecase)
    request_features = [f.name for f in usecase.request.features]
    for declared in usecase.views:
        view, fields = declared.name, [f.name for f in declared.features]
        newest = pd.read_parquet(feature_table_path(settings, view), columns=["event_timestamp"])[
            "event_timestamp"
        ].max()
        moment = newest + pd.Timedelta(minutes=1)
        flights = pd.DataFrame(
            {
                "flight_id": sample["flight_id"].to_numpy(),
                "carrier": sample["carrier"].to_numpy(),
                "tailnum": sample["tailnum"].to_numpy(),
                "origin": sample["origin"].to_numpy(),
                "route": (sample["origin"] + "-" + sample["dest"]).to_numpy(),
                "distance": sample["distance"].to_numpy(),
                "sched_dep_utc": moment,
                "event_timestamp": moment,
                "flight_date": moment.normalize().tz_localize(None),
                "late": 0,
            }
        )
        offline = feature_frame(store, settings, flights).set_index("flight_id").sort_index()
        online, _ = service.vectors(flights.drop(columns=["flight_date", "late"]))
        online.index = flights["flight_id"]
        columns = [*request_features, *fields]
        pd.testing.assert_frame_equal(
            online[columns].sort_index(), offline[columns].sort_index(), obj=view
        )
        # each view is really compared on values, not only on missing ones
        assert online[fields].notna().to_numpy().any(), view


def test_batch_predict_scores_a_day_like_the_service(
    trained_root: Path, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.store import feature_store
    from pipelines.adapters.storage import StorageLayout
    from pipelines.batch_predict import predictions_dir, rows_to_score
    from pipelines.fit import feature_frame
    from usecases import load

    settings = settings_for(trained_root)
    results = run_chain(settings, ("batch-predict",), spark=spark, handoff={"period": "2013-03-10"})
    assert results[0].ok, problems(results)
    scored = pd.read_parquet(predictions_dir(settings, "2013-03-10")).sort_values("flight_id")
    silver = pd.read_parquet(Path(settings.paths.lake) / "silver" / "flights")
    assert len(scored) == (silver["date"].astype(str) == "2013-03-10").sum()
    assert set(scored["model_version"]) == {"1"}
    assert scored["probability_late"].between(0, 1).all()
    summary = json.loads(
        (Path(predictions_dir(settings, "2013-03-10")) / "_summary.json").read_text()
    )
    assert (summary["rows"], summary["model_version"]) == (len(scored), "1")

    # The same flights and feature values through the service's own model give the same scores.
    service = in_process_service(trained_root, monkeypatch)
    flights = rows_to_score(
        spark, StorageLayout(settings.paths), load(settings.usecase), "2013-03-10"
    )
    vectors = feature_frame(feature_store(settings), settings, flights).sort_values("flight_id")
    online_scores = service.model.probabilities(vectors)
    assert list(vectors["flight_id"]) == list(scored["flight_id"])
    assert list(online_scores) == pytest.approx(list(scored["probability_late"]), abs=1e-12)


def test_batch_predict_refuses_a_bad_period(trained_root: Path, spark) -> None:
    results = run_chain(
        settings_for(trained_root), ("batch-predict",), spark=spark, handoff={"period": "2013-13"}
    )
    assert not results[0].ok and "--date YYYY-MM-DD or --month YYYY-MM" in problems(results)


def test_batch_predict_with_the_spark_offline_store_scores_the_same(
    trained_root: Path, spark, tmp_path: Path
) -> None:
    """The aws profile joins point-in-time in Spark (on EMR), not DuckDB: the same flights get
    the same scores either way."""
    from pipelines.batch_predict import predictions_dir

    root = tmp_path / "spark-store"
    shutil.copytree(trained_root, root, ignore=shutil.ignore_patterns("serve-*.log"))
    duckdb_settings = settings_for(root)
    spark_settings = duckdb_settings.with_overrides(
        {"features": {"offline_store": {"type": "spark"}}}
    )
    day = "2013-03-10"
    for current in (duckdb_settings, spark_settings):
        # `features` registers the repository again, with Spark sources for the Spark store
        results = run_chain(
            current, ("features", "batch-predict"), spark=spark, handoff={"period": day}
        )
        assert all(r.ok for r in results), problems(results)
        scored = pd.read_parquet(predictions_dir(current, day)).sort_values("flight_id")
        if current is duckdb_settings:
            expected = scored
    assert list(scored["flight_id"]) == list(expected["flight_id"])
    assert list(scored["probability_late"]) == pytest.approx(
        list(expected["probability_late"]), abs=1e-12
    )


def test_a_missing_model_stops_the_service_with_what_to_do(
    trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.service import ModelUnavailable

    monkeypatch.setenv("MLOPS_OVERRIDES", json.dumps(slice_overrides(trained_root)))
    monkeypatch.setenv("FLIGHT_DELAY_MODEL_TAG", "flight_delay:doesnotexist")
    with pytest.raises(ModelUnavailable, match=r"flight_delay:doesnotexist is not in the BentoML"):
        PredictionService()


def test_a_corrupt_model_file_stops_the_service_with_a_message(
    trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The champion's model file truncated in the store: the service refuses to start (so it
    never becomes ready) and says which model and what to do; the file is put back after."""
    from serving.__main__ import champion_model_tag
    from serving.service import ModelUnavailable

    tag = champion_model_tag(settings_for(trained_root))
    (model_file,) = Path(bentoml.models.get(tag).path_of("mlflow_model")).glob("model.lgb")
    intact = model_file.read_bytes()
    monkeypatch.setenv("MLOPS_OVERRIDES", json.dumps(slice_overrides(trained_root)))
    monkeypatch.setenv("FLIGHT_DELAY_MODEL_TAG", tag)
    try:
        model_file.write_bytes(intact[: len(intact) // 3])
        with pytest.raises(ModelUnavailable, match=rf"model {tag}: .* the artifact is corrupt"):
            PredictionService()
    finally:
        model_file.write_bytes(intact)
    assert model_file.read_bytes() == intact


def test_logs_reports_and_run_records_hold_no_secret(
    served: tuple[str, Path], trained_root: Path
) -> None:
    """Whatever the chain and the service wrote (logs, gate results, Data Docs, the model
    report, MLflow's run records) passes the secrets scan (see tests/secrets_scan.py)."""
    text = {".log", ".json", ".html", ".yaml", ".yml", ".txt", ".md", ".csv", ".ini"}
    outputs = [p for p in trained_root.rglob("*") if p.is_file() and p.suffix in text]
    assert {p.suffix for p in outputs} >= {".log", ".json", ".html"}
    assert findings([*outputs, served[1]], ignore=ENTROPY) == []


def test_the_release_s_smoke_request_passes_on_a_good_service_and_names_what_fails(
    server: str,
) -> None:
    """`python -m serving.smoke <url>`, which the release runs after rolling the service: the
    use case's example request gets a score; a wrong answer or no readiness is a failure."""
    from serving import smoke

    body, items_field, score_field = smoke.example_request("flight_delay")
    assert items_field == "flights" and len(body["flights"]) == 1
    answer = smoke.smoke(server, body, score_field, ready_within_s=30, poll_s=0.2)
    assert answer["model_version"] == "1"
    assert smoke.main([server, "--ready-within", "30"]) == 0

    with pytest.raises(smoke.SmokeFailed, match="without scores"):
        smoke.smoke(server, body, "no_such_field", ready_within_s=30)
    with pytest.raises(smoke.SmokeFailed, match=r"/predict answered 4\d\d"):
        smoke.smoke(server, {"flights": []}, score_field, ready_within_s=30)
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(smoke.SmokeFailed, match="did not answer 200 within"):
        smoke.smoke(closed, body, score_field, ready_within_s=0.3, poll_s=0.1, timeout_s=0.5)
