"""Log the models teams already have, the way data scientists log them, as versions of one
registered model; and a set of broken or refused ones. Used by tests/flavors.rs.

Every served case: a model trained with the real library (scikit-learn, XGBoost, LightGBM),
logged with MLflow's own `log_model` (defaults unless the case says otherwise), registered,
and the library's own predictions on held-out rows (with missing values where the library
takes them). Every refused case: a version the predictor must refuse with `invalid_model`
and a message containing `contains`, while the previous model keeps serving.

Usage: log_flavors.py --name NAME --out REPORT.json --work DIR
"""

import argparse
import io
import json
import logging
import os
import pickle
import warnings
import zipfile

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import joblib  # noqa: E402
import lightgbm as lgb  # noqa: E402
import mlflow  # noqa: E402
import mlflow.lightgbm  # noqa: E402
import mlflow.sklearn  # noqa: E402
import mlflow.xgboost  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xgboost as xgb  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.tree import DecisionTreeRegressor  # noqa: E402

TREE = [
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "numpy.dtype",
]
FEATURES = ["day_of_week", "day_of_month", "month", "is_holiday", "lag_1", "lag_7"]


class Hostile:
    """A pickle payload: unpickling it would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def data(seed, rows, missing):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, size=(rows, len(FEATURES)))
    x[:, 3] = rng.integers(0, 2, size=rows)  # a 0/1 feature: exact zeros
    y = 60.0 + 20.0 * np.sin(x[:, 0]) + 6.0 * x[:, 1] * x[:, 2] + 4.0 * np.abs(x[:, 4]) + 3.0 * x[:, 3]
    y += rng.normal(0.0, 1.0, size=rows)
    y = np.maximum(y, 1.0)  # positive: Poisson, Gamma and Tweedie objectives need it
    if missing:
        mask = rng.random(x.shape) < 0.1
        mask[:, 3] = False
        x[mask] = np.nan
    return pd.DataFrame(x, columns=FEATURES), y


def rows_json(frame):
    return [[None if np.isnan(v) else float(v) for v in row] for row in frame.to_numpy()]


class Registry:
    def __init__(self, name):
        self.name = name
        self.client = MlflowClient()

    def latest(self, run_id):
        versions = self.client.search_model_versions(f"name='{self.name}'")
        return str(max(int(v.version) for v in versions if v.run_id == run_id))

    def log(self, flavor, model, **kwargs):
        # Explicit requirements only skip MLflow's slow requirement inference (a subprocess
        # per model); the model files are what log_model writes by default.
        with mlflow.start_run() as run:
            getattr(mlflow, flavor).log_model(
                model, name="model", registered_model_name=self.name, pip_requirements=[flavor], **kwargs
            )
        return self.latest(run.info.run_id)

    def log_dir(self, local_dir):
        """Registers a model directory as is (how a broken upload reaches a registry)."""
        with mlflow.start_run() as run:
            mlflow.log_artifacts(local_dir, artifact_path="model")
        mlflow.register_model(f"runs:/{run.info.run_id}/model", self.name)
        return self.latest(run.info.run_id)


def save_dir(work, label, flavor, model, **kwargs):
    path = os.path.join(work, label)
    getattr(mlflow, flavor).save_model(model, path, pip_requirements=[flavor], **kwargs)
    return path


def truncate(path, keep=0.5):
    with open(path, "rb") as f:
        data_bytes = f.read()
    with open(path, "wb") as f:
        f.write(data_bytes[: int(len(data_bytes) * keep)])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    mlflow.set_experiment("forecast-e2e-flavors")
    reg = Registry(args.name)

    x_missing, y_missing = data(1, 3000, missing=True)
    x_finite, y_finite = data(2, 3000, missing=False)
    test_missing, _ = data(3, 200, missing=True)
    test_finite, _ = data(4, 200, missing=False)
    # Values on both sides of LightGBM's zero handling.
    test_missing.iloc[::9, 4] = 0.0
    y_binary = (y_missing > np.median(y_missing)).astype(float)
    cases, refused = [], []

    def served(label, version, flavor, estimator, model_predict, rows, names, tolerance, n_trees):
        frame = test_missing if rows == "missing" else test_finite
        cases.append(
            {
                "label": label,
                "version": version,
                "flavor": flavor,
                "estimator": estimator,
                "rows": rows,
                "expected": [float(v) for v in model_predict(frame)],
                "tolerance": tolerance,
                "feature_names": names,
                "n_trees": n_trees,
            }
        )

    signature_names = FEATURES
    numbered = [f"f{i}" for i in range(len(FEATURES))]

    # --- scikit-learn: skops (MLflow 3's default), cloudpickle and pickle.
    rf = RandomForestRegressor(n_estimators=30, max_depth=8, random_state=1, n_jobs=1).fit(x_missing, y_missing)
    v = reg.log("sklearn", rf, skops_trusted_types=TREE, input_example=x_missing.head(3))
    served("sklearn skops RandomForestRegressor", v, "sklearn", "RandomForestRegressor", rf.predict, "missing", signature_names, 1e-6, 30)

    # The old service's model: a forest in a registry by stage, and on disk as joblib.
    legacy = RandomForestRegressor(n_estimators=25, max_depth=8, random_state=9, n_jobs=1).fit(x_missing, y_missing)
    v = reg.log("sklearn", legacy, serialization_format="pickle")
    MlflowClient().transition_model_version_stage(args.name, v, "Production")
    served("sklearn pickle RandomForestRegressor (Production, the old service's)", v, "sklearn", "RandomForestRegressor", legacy.predict, "missing", signature_names, 1e-6, 25)
    production_version = v
    fallback_dir = os.path.join(args.work, "fallback")
    os.makedirs(fallback_dir, exist_ok=True)
    joblib.dump(legacy, os.path.join(fallback_dir, "model.joblib"))

    et = ExtraTreesRegressor(n_estimators=20, max_depth=8, random_state=2, n_jobs=1).fit(x_missing.to_numpy(), y_missing)
    v = reg.log("sklearn", et, skops_trusted_types=TREE)
    served("sklearn skops ExtraTreesRegressor (numpy, no signature)", v, "sklearn", "ExtraTreesRegressor", lambda f: et.predict(f.to_numpy()), "missing", numbered, 1e-6, 20)

    dt = DecisionTreeRegressor(max_depth=10, random_state=3).fit(x_missing, y_missing)
    v = reg.log("sklearn", dt, serialization_format="pickle")
    served("sklearn pickle DecisionTreeRegressor (feature_names_in_)", v, "sklearn", "DecisionTreeRegressor", dt.predict, "missing", signature_names, 1e-6, 1)

    gb = GradientBoostingRegressor(n_estimators=40, max_depth=4, learning_rate=0.1, random_state=4).fit(x_finite, y_finite)
    v = reg.log("sklearn", gb, serialization_format="cloudpickle")
    served("sklearn cloudpickle GradientBoostingRegressor", v, "sklearn", "GradientBoostingRegressor", gb.predict, "finite", signature_names, 1e-6, 40)

    gb_huber = GradientBoostingRegressor(n_estimators=20, loss="huber", init="zero", random_state=5).fit(x_finite, y_finite)
    v = reg.log("sklearn", gb_huber, skops_trusted_types=TREE)
    served("sklearn skops GradientBoostingRegressor (huber, init zero)", v, "sklearn", "GradientBoostingRegressor", gb_huber.predict, "finite", signature_names, 1e-6, 20)

    hgb = HistGradientBoostingRegressor(max_iter=40, random_state=6).fit(x_missing, y_missing)
    v = reg.log("sklearn", hgb, skops_trusted_types=TREE)
    served("sklearn skops HistGradientBoostingRegressor", v, "sklearn", "HistGradientBoostingRegressor", hgb.predict, "missing", signature_names, 1e-6, 40)

    hgb_poisson = HistGradientBoostingRegressor(max_iter=30, loss="poisson", random_state=7).fit(x_missing, y_missing)
    v = reg.log("sklearn", hgb_poisson, serialization_format="cloudpickle")
    served("sklearn cloudpickle HistGradientBoostingRegressor (poisson)", v, "sklearn", "HistGradientBoostingRegressor", hgb_poisson.predict, "missing", signature_names, 1e-6, 30)

    pipe = Pipeline(
        [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()), ("gbr", GradientBoostingRegressor(n_estimators=30, random_state=8))]
    ).fit(x_missing, y_missing)
    v = reg.log("sklearn", pipe, skops_trusted_types=TREE)
    served(
        "sklearn skops Pipeline(SimpleImputer, StandardScaler, GradientBoostingRegressor)",
        v, "sklearn", "Pipeline(SimpleImputer, StandardScaler, GradientBoostingRegressor)", pipe.predict, "missing", signature_names, 1e-6, 30,
    )

    # --- XGBoost: model.ubj (MLflow's default) and model.json; every served objective.
    positive = y_missing  # > 0 for poisson, gamma and tweedie
    for i, (objective, target, fmt) in enumerate(
        [
            ("reg:squarederror", y_missing, "ubj"),
            ("reg:absoluteerror", y_missing, "json"),
            ("reg:pseudohubererror", y_missing, "ubj"),
            ("count:poisson", positive, "json"),
            ("reg:tweedie", positive, "ubj"),
            ("reg:gamma", positive, "ubj"),
            ("binary:logistic", y_binary, "json"),
        ]
    ):
        model = xgb.XGBRegressor(n_estimators=40, max_depth=6, objective=objective, random_state=i).fit(x_missing, target)
        kwargs = {} if fmt == "ubj" else {"model_format": "json"}
        v = reg.log("xgboost", model, **kwargs)
        served(f"xgboost {fmt} {objective}", v, "xgboost", f"XGBRegressor ({objective})", model.predict, "missing", signature_names, 1e-5, 40)

    # --- LightGBM: a Booster (model.lgb) and LGBMRegressor (skops, MLflow's default).
    for objective, extra in [("regression", {}), ("poisson", {}), ("binary", {}), ("regression", {"zero_as_missing": True}), ("huber", {"use_missing": False})]:
        target = y_binary if objective == "binary" else y_missing
        params = {"objective": objective, "num_leaves": 31, "verbose": -1, "seed": 1, **extra}
        booster = lgb.train(params, lgb.Dataset(x_missing, target), num_boost_round=40)
        v = reg.log("lightgbm", booster)
        label = f"lightgbm Booster {objective} {extra}"
        served(label, v, "lightgbm", f"Booster ({objective})", booster.predict, "missing", signature_names, 1e-5, 40)
    lgbm = lgb.LGBMRegressor(n_estimators=40, objective="gamma", verbose=-1, random_state=2).fit(x_missing, y_missing)
    v = reg.log("lightgbm", lgbm)
    served("lightgbm skops LGBMRegressor (gamma)", v, "lightgbm", "LGBMRegressor (gamma)", lgbm.predict, "missing", signature_names, 1e-5, 40)

    # Early stopping: the pickled Booster keeps every iteration, predict uses the best.
    stopped = lgb.LGBMRegressor(n_estimators=300, learning_rate=0.3, verbose=-1, random_state=3).fit(
        x_missing[:2000], y_missing[:2000], eval_set=[(x_missing[2000:], y_missing[2000:])],
        callbacks=[lgb.early_stopping(3, verbose=False)],
    )
    v = reg.log("lightgbm", stopped)
    served("lightgbm skops LGBMRegressor (early stopping)", v, "lightgbm", "LGBMRegressor (regression)", stopped.predict, "missing", signature_names, 1e-5, int(stopped.best_iteration_))

    # --- Refused: each must answer invalid_model and leave the served model alone.
    marker = os.path.join(args.work, "hostile-payload-ran")
    hostile = os.path.join(args.work, "hostile")
    save_dir(args.work, "hostile", "sklearn", dt, serialization_format="pickle")
    with open(os.path.join(hostile, "model.pkl"), "wb") as f:
        pickle.dump(Hostile(marker), f)
    refused.append({"label": "a pickle whose __reduce__ runs os.system", "version": reg.log_dir(hostile), "contains": "posix.system"})

    path = save_dir(args.work, "truncated-skops", "sklearn", rf, skops_trusted_types=TREE)
    truncate(os.path.join(path, "model.skops"))
    refused.append({"label": "a truncated skops zip", "version": reg.log_dir(path), "contains": "zip"})

    path = save_dir(args.work, "truncated-pickle", "sklearn", gb, serialization_format="cloudpickle")
    truncate(os.path.join(path, "model.pkl"))
    refused.append({"label": "a truncated cloudpickle", "version": reg.log_dir(path), "contains": "truncated"})

    xgb_model = xgb.XGBRegressor(n_estimators=5, max_depth=3).fit(x_missing, y_missing)
    path = save_dir(args.work, "truncated-ubj", "xgboost", xgb_model)
    truncate(os.path.join(path, "model.ubj"))
    refused.append({"label": "a truncated ubj", "version": reg.log_dir(path), "contains": "truncated"})

    # An .npy inside a skops file whose header claims 10^12 rows.
    path = save_dir(args.work, "huge-shape", "sklearn", rf, skops_trusted_types=TREE)
    skops_path = os.path.join(path, "model.skops")
    with zipfile.ZipFile(skops_path) as zin:
        entries = {n: zin.read(n) for n in zin.namelist()}
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    huge = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x00" * 16
    for entry in entries:
        if entry.endswith(".npy"):
            entries[entry] = huge
    with zipfile.ZipFile(skops_path, "w") as zout:
        for entry, content in entries.items():
            zout.writestr(entry, content)
    refused.append({"label": "an array whose declared shape would take terabytes", "version": reg.log_dir(path), "contains": "bytes of data"})

    # Node indices out of range in an XGBoost JSON model.
    path = save_dir(args.work, "bad-index", "xgboost", xgb_model, model_format="json")
    with open(os.path.join(path, "model.json")) as f:
        doc = json.load(f)
    doc["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"][0] = 1_000_000_000
    with open(os.path.join(path, "model.json"), "w") as f:
        json.dump(doc, f)
    refused.append({"label": "a tree child index out of range", "version": reg.log_dir(path), "contains": "out of range"})

    # A forest that names one deep tree 200,000 times: a small file, 400 million nodes.
    shared = RandomForestRegressor(n_estimators=1, max_depth=12, random_state=1, n_jobs=1).fit(x_missing, y_missing)
    shared.estimators_ = shared.estimators_ * 200_000
    shared.n_estimators = len(shared.estimators_)
    path = save_dir(args.work, "shared-tree", "sklearn", shared, serialization_format="pickle")
    refused.append({"label": "one tree named 200,000 times", "version": reg.log_dir(path), "contains": "more nodes than the file could"})

    categorical = x_finite.copy()
    categorical["month"] = pd.Categorical((np.abs(categorical["month"]) * 2).astype(int))
    hgb_cat = HistGradientBoostingRegressor(max_iter=5, categorical_features="from_dtype").fit(categorical, y_finite)
    path = save_dir(args.work, "categorical", "sklearn", hgb_cat, serialization_format="cloudpickle")
    refused.append({"label": "HistGradientBoostingRegressor with categorical features", "version": reg.log_dir(path), "contains": "categorical"})

    dart = xgb.XGBRegressor(n_estimators=5, booster="dart").fit(x_missing, y_missing)
    refused.append({"label": "an XGBoost dart booster", "version": reg.log("xgboost", dart), "contains": "dart"})

    linear = lgb.train({"objective": "regression", "linear_tree": True, "verbose": -1}, lgb.Dataset(x_finite, y_finite), 5)
    refused.append({"label": "LightGBM linear trees", "version": reg.log("lightgbm", linear), "contains": "linear"})

    lr = LinearRegression().fit(x_finite, y_finite)
    refused.append({"label": "an estimator that is not a tree ensemble", "version": reg.log("sklearn", lr), "contains": "LinearRegression"})

    with open(args.out, "w") as f:
        json.dump(
            {
                "rows": {"missing": rows_json(test_missing), "finite": rows_json(test_finite)},
                "cases": cases,
                "refused": refused,
                "hostile_marker": marker,
                "production_version": production_version,
                "fallback_dir": fallback_dir,
            },
            f,
        )


if __name__ == "__main__":
    main()
