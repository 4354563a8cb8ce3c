"""Log one model per library that /explain must explain, the way data scientists log them,
and what `shap.TreeExplainer` says about each. Used by tests/explain.rs.

Every case: a model trained with the real library, logged with MLflow's own `log_model`,
registered; and, for held-out rows, `shap.TreeExplainer(model).shap_values(rows)` and its
`expected_value` (shap's exact path-dependent TreeSHAP, from the trees' node covers), with
the library's own predictions. A Pipeline is explained as shap explains one: its final
estimator on the rows its imputer and scaler made (one column in, one column out).

Usage: log_explained.py --name NAME --out REPORT.json
"""

import argparse
import json
import logging
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import lightgbm as lgb  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import shap  # noqa: E402
import xgboost as xgb  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from log_flavors import TREE, Registry, data, rows_json  # noqa: E402


def explained(model, rows):
    """shap's contributions and expected value for `rows`, and the model's predictions."""
    explainer = shap.TreeExplainer(model)
    values = np.asarray(explainer.shap_values(rows), dtype=np.float64)
    expected = float(np.ravel(explainer.expected_value)[0])
    return values.tolist(), expected


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    mlflow.set_experiment("forecast-e2e-explain")
    reg = Registry(args.name)

    x_missing, y_missing = data(11, 3000, missing=True)
    x_finite, y_finite = data(12, 3000, missing=False)
    test_missing, _ = data(13, 60, missing=True)
    test_finite, _ = data(14, 60, missing=False)
    test_missing.iloc[::7, 4] = 0.0  # LightGBM's zero handling on both sides
    cases = []

    def case(label, flavor, version, model, rows, shap_model=None, shap_rows=None):
        frame = test_missing if rows == "missing" else test_finite
        values, expected = explained(shap_model or model, frame if shap_rows is None else shap_rows(frame))
        cases.append(
            {
                "label": label,
                "flavor": flavor,
                "version": version,
                "rows": rows,
                "shap_values": values,
                "expected_value": expected,
                "predictions": [float(p) for p in model.predict(frame)],
            }
        )

    rf = RandomForestRegressor(n_estimators=30, max_depth=8, random_state=1, n_jobs=1).fit(x_missing, y_missing)
    case("RandomForestRegressor", "sklearn", reg.log("sklearn", rf, skops_trusted_types=TREE), rf, "missing")

    et = ExtraTreesRegressor(n_estimators=20, max_depth=10, random_state=2, n_jobs=1).fit(x_finite, y_finite)
    case("ExtraTreesRegressor", "sklearn", reg.log("sklearn", et, serialization_format="cloudpickle"), et, "finite")

    gbr = GradientBoostingRegressor(n_estimators=40, max_depth=4, learning_rate=0.1, random_state=3).fit(x_finite, y_finite)
    case("GradientBoostingRegressor", "sklearn", reg.log("sklearn", gbr, skops_trusted_types=TREE), gbr, "finite")

    hgb = HistGradientBoostingRegressor(max_iter=40, random_state=4).fit(x_missing, y_missing)
    case("HistGradientBoostingRegressor", "sklearn", reg.log("sklearn", hgb, skops_trusted_types=TREE), hgb, "missing")

    pipe = Pipeline(
        [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()), ("gbr", GradientBoostingRegressor(n_estimators=30, random_state=5))]
    ).fit(x_missing, y_missing)
    case(
        "Pipeline(SimpleImputer, StandardScaler, GradientBoostingRegressor)",
        "sklearn",
        reg.log("sklearn", pipe, skops_trusted_types=TREE),
        pipe,
        "missing",
        shap_model=pipe[-1],
        shap_rows=lambda frame: pipe[:-1].transform(frame),
    )

    xgbr = xgb.XGBRegressor(n_estimators=40, max_depth=6, random_state=6).fit(x_missing, y_missing)
    case("XGBRegressor (reg:squarederror)", "xgboost", reg.log("xgboost", xgbr), xgbr, "missing")

    booster = lgb.train({"objective": "regression", "num_leaves": 31, "verbose": -1, "seed": 7}, lgb.Dataset(x_missing, y_missing), num_boost_round=40)
    case("LightGBM Booster (regression)", "lightgbm", reg.log("lightgbm", booster), booster, "missing")

    lgbm = lgb.LGBMRegressor(n_estimators=30, verbose=-1, random_state=8).fit(x_missing, y_missing)
    case("LGBMRegressor (regression)", "lightgbm", reg.log("lightgbm", lgbm), lgbm, "missing")

    # A Poisson model predicts exp(sum of trees): contributions cannot add up to it.
    poisson = HistGradientBoostingRegressor(max_iter=10, loss="poisson", random_state=9).fit(x_missing, y_missing)
    unexplainable = {"version": reg.log("sklearn", poisson, skops_trusted_types=TREE), "contains": "Exp"}

    with open(args.out, "w") as f:
        json.dump(
            {
                "rows": {"missing": rows_json(test_missing), "finite": rows_json(test_finite)},
                "cases": cases,
                "unexplainable": unexplainable,
            },
            f,
        )


if __name__ == "__main__":
    main()
