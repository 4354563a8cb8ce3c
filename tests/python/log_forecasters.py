"""Log archive-forecast models the way data scientists log them, and what they forecast.
Used by tests/forecast.rs and tests/ui.rs.

A synthetic archive-ingest history (weekly rhythm, month-end batches, noise), its
archive-forecast features computed as crates/model/src/features.rs computes them, and three
registered versions, each logged with `mlflow.sklearn.log_model` and an input example:
  1. RandomForestRegressor on the archive-forecast features (a band from its trees);
  2. GradientBoostingRegressor on the same features (no band: it does not average);
  3. RandomForestRegressor on other features (cannot forecast).
For the last 60 days of history and a 30-day horizon, the report holds each day's
forecast made recursively with the library's own `predict` (each forecast the next day's
lag), and for the forest the 10th and 90th percentiles of its trees' predictions per day
(numpy's default interpolation).

Usage: log_forecasters.py --name NAME --out REPORT.json
"""

import argparse
import calendar
import datetime as dt
import json
import logging
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor  # noqa: E402

from log_flavors import TREE, Registry  # noqa: E402

FEATURES = ["day_of_week", "day_of_month", "month", "is_weekend", "is_month_end", "lag_1", "lag_7", "rolling_mean_7"]
HORIZON = 30


def features(dates, volumes, i):
    """The features of day i from the days before it (as features.rs: sums in order)."""
    d = dates[i]
    weekday = d.weekday()
    days_in_month = calendar.monthrange(d.year, d.month)[1]
    week = volumes[i - 7 : i]
    return [
        float(weekday),
        float(d.day),
        float(d.month),
        1.0 if weekday >= 5 else 0.0,
        1.0 if d.day + 1 >= days_in_month else 0.0,
        volumes[i - 1],
        volumes[i - 7],
        sum(week) / 7.0,
    ]


def history(seed, days):
    rng = np.random.default_rng(seed)
    start = dt.date(2025, 6, 1)
    dates = [start + dt.timedelta(days=i) for i in range(days)]
    volumes = []
    for d in dates:
        base = 800.0 + (250.0 if d.weekday() < 5 else -150.0)
        if d.day + 1 >= calendar.monthrange(d.year, d.month)[1]:
            base += 400.0
        volumes.append(float(round(base + rng.normal(0.0, 60.0), 3)))
    return dates, volumes


def recursive(model, dates, volumes, horizon, band):
    """Each day's forecast from the days before, fed back; with the trees' percentiles."""
    dates, volumes = list(dates), list(volumes)
    out = []
    for _ in range(horizon):
        dates.append(dates[-1] + dt.timedelta(days=1))
        volumes.append(0.0)
        row = pd.DataFrame([features(dates, volumes, len(dates) - 1)], columns=FEATURES)
        forecast = float(model.predict(row)[0])
        volumes[-1] = forecast
        day = {"date": dates[-1].isoformat(), "forecast": forecast}
        if band:
            trees = [float(t.predict(row.to_numpy())[0]) for t in model.estimators_]
            day["p10"], day["p90"] = (float(v) for v in np.percentile(trees, [10, 90]))
        out.append(day)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    mlflow.set_experiment("forecast-e2e-forecast")
    reg = Registry(args.name)

    dates, volumes = history(21, 420)
    x = pd.DataFrame([features(dates, volumes, i) for i in range(7, len(dates))], columns=FEATURES)
    y = np.asarray(volumes[7:])
    example = x.head(3)

    rf = RandomForestRegressor(n_estimators=25, max_depth=8, random_state=1, n_jobs=1).fit(x, y)
    rf_version = reg.log("sklearn", rf, skops_trusted_types=TREE, input_example=example)
    gbr = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=2).fit(x, y)
    gbr_version = reg.log("sklearn", gbr, skops_trusted_types=TREE, input_example=example)
    other = pd.DataFrame({"temperature": x["lag_1"] / 40.0, "pressure": x["day_of_week"]})
    weather = RandomForestRegressor(n_estimators=5, max_depth=4, random_state=3, n_jobs=1).fit(other, y)
    other_version = reg.log("sklearn", weather, skops_trusted_types=TREE, input_example=other.head(2))

    recent_dates, recent_volumes = dates[-60:], volumes[-60:]
    batch = x.tail(5)
    with open(args.out, "w") as f:
        json.dump(
            {
                "features": FEATURES,
                "versions": {"forest": rf_version, "boosting": gbr_version, "other": other_version},
                "history": [{"date": d.isoformat(), "gigabytes": v} for d, v in zip(recent_dates, recent_volumes)],
                "horizon": HORIZON,
                "forest": recursive(rf, recent_dates, recent_volumes, HORIZON, band=True),
                "boosting": recursive(gbr, recent_dates, recent_volumes, HORIZON, band=False),
                "example_row": [float(v) for v in example.iloc[0]],
                "example_predictions": {"forest": float(rf.predict(example.head(1))[0]), "boosting": float(gbr.predict(example.head(1))[0])},
                "batch_rows": batch.to_numpy().tolist(),
                "batch_predictions": {"forest": [float(p) for p in rf.predict(batch)], "boosting": [float(p) for p in gbr.predict(batch)]},
            },
            f,
        )


if __name__ == "__main__":
    main()
