"""The synthetic use case's upstream files, made deterministically (committed under `data/`).

Three facilities in three time zones, two meters each, a reading every four hours of local time from
January to March 2024 (the clocks move forward in March in two of the zones). A meter's value
wanders (an autoregressive walk) with a daily rhythm, so its recent readings and its facility's
recent spikes say something about the next one. `python -m usecases.synthetic.data` writes the
files again; the use case's tests check the committed ones are what this makes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

FOLDER = Path(__file__).resolve().parent / "data"
FACILITIES = (
    ("S1", "America/New_York", "east"),
    ("S2", "Europe/Berlin", "centre"),
    ("S3", "Asia/Tokyo", "far"),
)
METERS_PER_SITE = 2
FIRST_DAY, DAYS = date(2024, 1, 1), 91
LOCAL_HOURS = (0, 4, 8, 12, 16, 20)


def facilities() -> pd.DataFrame:
    return pd.DataFrame(FACILITIES, columns=["facility_id", "tz", "district"])


def readings(first_day: date = FIRST_DAY, days: int = DAYS, seed: int = 11) -> pd.DataFrame:
    """Every meter's readings from `first_day` on, in the upstream's columns (local date and
    time, and the UTC instant of the reading). Another period or seed is other data."""
    rng = np.random.default_rng(seed)
    rows = []
    for facility_id, zone, _ in FACILITIES:
        for number in range(METERS_PER_SITE):
            meter_id = f"{facility_id}M{number + 1}"
            level = 0.0
            for offset in range(days):
                day = first_day + timedelta(days=offset)
                for hour in LOCAL_HOURS:
                    level = 0.85 * level + rng.normal(0.0, 0.5)
                    rhythm = 0.6 * np.sin((hour - 6) / 24 * 2 * np.pi)
                    local = datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo(zone))
                    rows.append(
                        {
                            "meter_id": meter_id,
                            "facility_id": facility_id,
                            "year": day.year,
                            "month": day.month,
                            "day": day.day,
                            "hhmm": hour * 100,
                            "value": round(float(level + rhythm + rng.normal(0.0, 0.3)), 4),
                            "read_utc": local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        }
                    )
    frame = pd.DataFrame(rows)
    return frame.sort_values(["year", "month", "day", "hhmm", "meter_id"], ignore_index=True)


def write(folder: Path = FOLDER) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (("facilities.csv", facilities()), ("meter_readings.csv", readings())):
        frame.to_csv(folder / name, index=False, lineterminator="\n")
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for path in write():
        print(path)
