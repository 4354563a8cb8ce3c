"""Log a scikit-learn forest with a drift reference written by the README's lines, and
register it. Used by tests/drift.rs: the lines a data scientist copies must work.

Usage: log_with_drift_reference.py --name NAME  (prints the registered version)
"""

import argparse
import json
import logging
import os
import tempfile
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import mlflow  # noqa: E402
import mlflow.sklearn  # noqa: E402
import numpy as np  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from sklearn.ensemble import RandomForestRegressor  # noqa: E402

from log_flavors import TREE, data  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    mlflow.set_experiment("forecast-e2e-drift")
    X_train, y = data(31, 2000, missing=True)
    model = RandomForestRegressor(n_estimators=10, max_depth=6, random_state=1, n_jobs=1).fit(X_train, y)
    os.chdir(tempfile.mkdtemp())
    with mlflow.start_run():
        # --- the README's lines, as written there (the registered name aside).
        edges = {c: np.unique(np.nanquantile(X_train[c], np.linspace(0.1, 0.9, 9))) for c in X_train.columns}
        shares = {c: np.histogram(X_train[c].dropna(), [-np.inf, *edges[c], np.inf])[0] / X_train[c].notna().sum() for c in X_train.columns}
        json.dump({"format": "forecast-drift-reference/v1", "features": [{"name": c, "edges": edges[c].tolist(), "shares": shares[c].tolist()} for c in X_train.columns]}, open("drift_reference.json", "w"))
        info = mlflow.sklearn.log_model(model, name="model", input_example=X_train.head(3), skops_trusted_types=TREE)
        MlflowClient().log_model_artifact(info.model_id, "drift_reference.json"); version = mlflow.register_model(info.model_uri, args.name)  # noqa: E702
    print(version.version)


if __name__ == "__main__":
    main()
