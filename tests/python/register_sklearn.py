"""Registers scikit-learn forests on archive-forecast rows as versions of one model, the
way a data scientist logs them (`mlflow.sklearn.log_model`), one per `SEED:SCALE` pair:
the forest trained with that seed on the target times SCALE (SCALE 3 is a version that
loads and predicts finitely but three times too high, as a wrong unit would). The first
version gets the alias `champion`. Used by tests/progressive_e2e.rs.

    MLFLOW_TRACKING_URI=... python register_sklearn.py --name NAME --versions 1:1,2:1,3:3

Prints the versions as a JSON list, in the order given.
"""

import argparse
import json
import logging
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import mlflow  # noqa: E402
import mlflow.sklearn  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from sklearn.ensemble import RandomForestRegressor  # noqa: E402

# What MLflow's default (skops) format must be told it may load back for a forest.
TRUSTED = ["sklearn.tree._tree.Tree", "numpy.dtype"]

FEATURES = [
    "day_of_week",
    "day_of_month",
    "month",
    "is_weekend",
    "is_holiday",
    "lag_1",
    "lag_7",
    "lag_28",
]


def archive_rows(seed, n=3000):
    """Rows shaped like tests/support's `archive_row`, and a positive daily target."""
    rng = np.random.default_rng(seed)
    dow = rng.integers(0, 7, n)
    frame = pd.DataFrame(
        {
            "day_of_week": dow.astype(float),
            "day_of_month": rng.integers(1, 29, n).astype(float),
            "month": rng.integers(1, 13, n).astype(float),
            "is_weekend": (dow >= 5).astype(float),
            "is_holiday": (rng.random(n) < 0.03).astype(float),
            "lag_1": rng.uniform(850, 1150, n),
            "lag_7": rng.uniform(850, 1150, n),
            "lag_28": rng.uniform(850, 1150, n),
        }
    )
    target = (
        0.5 * frame["lag_1"]
        + 0.3 * frame["lag_7"]
        + 0.2 * frame["lag_28"]
        - 80.0 * frame["is_weekend"]
        - 120.0 * frame["is_holiday"]
        + rng.normal(0, 10, n)
    )
    return frame, target.to_numpy()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--versions", required=True, help="SEED:SCALE,...")
    args = parser.parse_args()
    mlflow.set_experiment("forecast-e2e-progressive")
    client = MlflowClient()
    versions = []
    for pair in args.versions.split(","):
        seed, scale = pair.split(":")
        frame, target = archive_rows(int(seed))
        forest = RandomForestRegressor(n_estimators=20, max_depth=8, random_state=int(seed))
        forest.fit(frame, target * float(scale))
        with mlflow.start_run() as run:
            mlflow.sklearn.log_model(
                forest,
                name="model",
                registered_model_name=args.name,
                pip_requirements=["sklearn"],
                input_example=frame.head(3),
                skops_trusted_types=TRUSTED,
            )
        found = client.search_model_versions(f"name='{args.name}'")
        versions.append(str(max(int(v.version) for v in found if v.run_id == run.info.run_id)))
    client.set_registered_model_alias(args.name, "champion", versions[0])
    print(json.dumps(versions))


if __name__ == "__main__":
    main()
