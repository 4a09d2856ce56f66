"""`python -m serving` for real: a `bentoml serve` process over the champion trained on the
slice, checked over HTTP for readiness, good answers and 4xx for client mistakes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from pipelines.chain import CHAIN, run_chain
from tests.conftest import settings_for, slice_overrides
from tests.lake_helpers import problems

ROOT = Path(__file__).resolve().parents[2]
FLIGHT = {
    "carrier": "UA",
    "tailnum": "N14228",
    "origin": "EWR",
    "dest": "IAH",
    "scheduled_departure": "2013-03-10T08:00:00-04:00",
    "distance": 1400,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory: pytest.TempPathFactory, spark) -> Path:
    """The whole chain run once on the slice: a champion, materialized features, a Bento."""
    root = tmp_path_factory.mktemp("served")
    results = run_chain(settings_for(root), CHAIN, spark=spark)
    assert all(r.ok for r in results), problems(results)
    return root


@pytest.fixture(scope="module")
def server(trained_root: Path) -> Iterator[str]:
    root = trained_root
    port = free_port()
    env = {
        **os.environ,
        "MLOPS_OVERRIDES": json.dumps(slice_overrides(root)),
        "PYTHONUNBUFFERED": "1",
    }
    log_file = (root / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"the server exited with {process.returncode}:\n{(root / 'serve.log').read_text()[-3000:]}"
            )
        try:
            if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                break
        except requests.RequestException:  # not listening yet, or busy starting
            pass
        time.sleep(1)
    else:
        process.kill()
        pytest.fail(f"not ready after 180 s:\n{(root / 'serve.log').read_text()[-3000:]}")
    yield url
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log_file.close()


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
    assert "flight_delay_predictions_total" in metrics


def test_online_vectors_equal_offline_vectors(
    trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No training/serving skew: the service builds, from the online store, exactly the vector
    the point-in-time join builds offline for the same flights at the same moment.

    The online store keeps each entity's newest values only, so each view is compared at a
    moment just after its newest event (within its TTL), where both sides must agree.
    """
    from features.definitions import VIEWS, feature_table_path
    from features.request import REQUEST_FEATURES
    from features.store import feature_store
    from pipelines.train import feature_frame
    from serving.__main__ import champion_model_tag
    from serving.service import FlightDelayService

    settings = settings_for(trained_root)
    monkeypatch.setenv("MLOPS_OVERRIDES", json.dumps(slice_overrides(trained_root)))
    monkeypatch.setenv("FLIGHT_DELAY_MODEL_TAG", champion_model_tag(settings))
    service = FlightDelayService()
    store = feature_store(settings)

    silver = pd.read_parquet(Path(settings.paths.lake) / "silver" / "flights")
    sample = (
        silver[~silver["cancelled"] & silver["tailnum"].notna()]
        .sort_values("flight_id")
        .iloc[::20]
        .head(15)
    )
    for view, (_, _, fields) in VIEWS.items():
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
        online, _ = service.vectors(
            flights.drop(columns=["event_timestamp", "flight_date", "late"])
        )
        online.index = flights["flight_id"]
        columns = [*REQUEST_FEATURES, *(name for name, _, _ in fields)]
        pd.testing.assert_frame_equal(
            online[columns].sort_index(), offline[columns].sort_index(), obj=view
        )
        # each view is really compared on values, not only on missing ones
        assert online[[name for name, _, _ in fields]].notna().to_numpy().any(), view


def test_batch_predict_scores_a_day_like_the_service(
    trained_root: Path, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.store import feature_store
    from pipelines.adapters.storage import StorageLayout
    from pipelines.batch_predict import predictions_dir, scheduled_flights
    from pipelines.train import feature_frame
    from serving.__main__ import champion_model_tag
    from serving.service import FlightDelayService

    settings = settings_for(trained_root)
    results = run_chain(settings, ("batch-predict",), spark=spark, handoff={"period": "2013-03-10"})
    assert results[0].ok, problems(results)
    scored = pd.read_parquet(predictions_dir(settings, "2013-03-10")).sort_values("flight_id")
    silver = pd.read_parquet(Path(settings.paths.lake) / "silver" / "flights")
    assert len(scored) == (silver["date"].astype(str) == "2013-03-10").sum()
    assert set(scored["model_version"]) == {"1"}
    assert scored["probability_late"].between(0, 1).all()
    summary = json.loads((predictions_dir(settings, "2013-03-10") / "_summary.json").read_text())
    assert (summary["flights"], summary["model_version"]) == (len(scored), "1")

    # The same flights and feature values through the service's own model give the same scores.
    monkeypatch.setenv("MLOPS_OVERRIDES", json.dumps(slice_overrides(trained_root)))
    monkeypatch.setenv("FLIGHT_DELAY_MODEL_TAG", champion_model_tag(settings))
    service = FlightDelayService()
    flights = scheduled_flights(spark, StorageLayout(settings.paths), "2013-03-10")
    vectors = feature_frame(feature_store(settings), settings, flights).sort_values("flight_id")
    online_scores = service.model.predict(vectors[service.features])
    assert list(vectors["flight_id"]) == list(scored["flight_id"])
    assert list(online_scores) == pytest.approx(list(scored["probability_late"]), abs=1e-12)


def test_batch_predict_refuses_a_bad_period(trained_root: Path, spark) -> None:
    results = run_chain(
        settings_for(trained_root), ("batch-predict",), spark=spark, handoff={"period": "2013-13"}
    )
    assert not results[0].ok and "--date YYYY-MM-DD or --month YYYY-MM" in problems(results)
