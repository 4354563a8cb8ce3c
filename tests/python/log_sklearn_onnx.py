"""Train a scikit-learn RandomForestRegressor, export it with skl2onnx and log it to MLflow
with mlflow.onnx.log_model, registering a version.

Used by the end-to-end tests and the benchmark: the predictor must serve this model
natively and match scikit-learn's predictions. Writes a JSON report with the held-out rows,
scikit-learn's predictions on them, the registered version, and (with --save-sklearn) the
path of a pickled sklearn MLflow model for `mlflow models serve`.

Usage: log_sklearn_onnx.py --name NAME --out REPORT.json [--trees 100] [--depth 10]
       [--features 8] [--alias A] [--seed S] [--save-sklearn DIR]
"""

import argparse
import json

import mlflow
import mlflow.onnx
import mlflow.sklearn
import numpy as np
from mlflow.tracking import MlflowClient
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestRegressor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--alias", default=None)
    parser.add_argument("--save-sklearn", default=None)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    x = rng.uniform(-3.0, 3.0, size=(args.rows, args.features))
    y = (
        100.0 * np.sin(x[:, 0])
        + 40.0 * x[:, 1] * x[:, 2 % args.features]
        + 15.0 * np.abs(x[:, 3 % args.features])
        + rng.normal(0.0, 5.0, size=args.rows)
    )
    split = int(args.rows * 0.8)
    model = RandomForestRegressor(
        n_estimators=args.trees, max_depth=args.depth, random_state=args.seed, n_jobs=1
    )
    model.fit(x[:split], y[:split])
    holdout = x[split : split + 200]
    expected = model.predict(holdout)

    onx = to_onnx(model, x[:1].astype(np.float32), target_opset={"": 17, "ai.onnx.ml": 3})
    feature_names = [f"x{i}" for i in range(args.features)]
    mlflow.set_experiment("forecast-e2e-sklearn")
    with mlflow.start_run() as run:
        mlflow.log_params({"n_estimators": args.trees, "max_depth": args.depth})
        info = mlflow.onnx.log_model(
            onx,
            name="model",
            registered_model_name=args.name,
            metadata={"feature_names": feature_names},
        )
        if args.save_sklearn:
            mlflow.sklearn.save_model(
                model,
                args.save_sklearn,
                skops_trusted_types=["sklearn.tree._tree.Tree"],
            )
    client = MlflowClient()
    versions = client.search_model_versions(f"name='{args.name}'")
    version = max(int(v.version) for v in versions if v.run_id == run.info.run_id)
    if args.alias:
        client.set_registered_model_alias(args.name, args.alias, str(version))
    with open(args.out, "w") as f:
        json.dump(
            {
                "version": str(version),
                "model_uri": info.model_uri,
                "feature_names": feature_names,
                "rows": holdout.tolist(),
                "expected": expected.tolist(),
            },
            f,
        )


if __name__ == "__main__":
    main()
