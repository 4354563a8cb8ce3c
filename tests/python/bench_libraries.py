"""Per-row prediction cost of each library on its own model, single thread, batch 1 and
batch 1024; and the same models saved as MLflow model directories for the Rust evaluator
to time on the same rows (`cargo xtask bench`).

Models: 100 trees of depth 10 on 8 features (scikit-learn RandomForestRegressor, its
skl2onnx export run by onnxruntime, XGBoost, LightGBM).

Usage: bench_libraries.py --out DIR [--seconds 2]
"""

import argparse
import json
import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

import lightgbm as lgb  # noqa: E402
import mlflow.lightgbm  # noqa: E402
import mlflow.onnx  # noqa: E402
import mlflow.sklearn  # noqa: E402
import mlflow.xgboost  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import xgboost as xgb  # noqa: E402
from skl2onnx import to_onnx  # noqa: E402
from sklearn.ensemble import RandomForestRegressor  # noqa: E402

TREES, DEPTH, FEATURES = 100, 10, 8


def per_row_us(predict, rows, batch, seconds):
    """Median over repeats of the time per row, predicting `batch` rows at a time."""
    batches = [rows[i : i + batch] for i in range(0, len(rows) - batch + 1, batch)] or [rows[:batch]]
    samples = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline or len(samples) < 5:
        chunk = batches[i % len(batches)]
        start = time.perf_counter()
        predict(chunk)
        samples.append((time.perf_counter() - start) / len(chunk) * 1e6)
        i += 1
    return float(np.median(samples))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    rng = np.random.default_rng(7)
    x = rng.uniform(-3.0, 3.0, size=(20000, FEATURES))
    y = 100.0 * np.sin(x[:, 0]) + 40.0 * x[:, 1] * x[:, 2] + 15.0 * np.abs(x[:, 3]) + rng.normal(0, 5, len(x))
    train, rows = x[:16000], x[16000:]

    rf = RandomForestRegressor(n_estimators=TREES, max_depth=DEPTH, random_state=1, n_jobs=1).fit(train, y[:16000])
    booster = xgb.XGBRegressor(n_estimators=TREES, max_depth=DEPTH, nthread=1, random_state=1).fit(train, y[:16000])
    booster.get_booster().set_param({"nthread": 1})
    lgbm = lgb.train(
        {"objective": "regression", "max_depth": DEPTH, "num_leaves": 2**DEPTH - 1, "num_threads": 1, "verbose": -1},
        lgb.Dataset(train, y[:16000]),
        num_boost_round=TREES,
    )
    onx = to_onnx(rf, train[:1].astype(np.float32), target_opset={"": 17, "ai.onnx.ml": 3})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onx.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    dirs = {}
    for name, flavor, model, kwargs in [
        ("sklearn", "sklearn", rf, {"serialization_format": "cloudpickle"}),
        ("xgboost", "xgboost", booster, {}),
        ("lightgbm", "lightgbm", lgbm, {}),
        ("onnxruntime", "onnx", onx, {}),
    ]:
        path = os.path.join(args.out, name)
        if not os.path.exists(path):
            getattr(mlflow, flavor).save_model(model, path, pip_requirements=[flavor], **kwargs)
        dirs[name] = path

    predictors = {
        "sklearn": rf.predict,
        "xgboost": lambda r: booster.get_booster().inplace_predict(r),
        "lightgbm": lambda r: lgbm.predict(r, num_threads=1),
        "onnxruntime": lambda r: session.run(None, {input_name: r.astype(np.float32)}),
    }
    timings = {}
    for name, predict in predictors.items():
        timings[name] = {
            "batch_1_us_per_row": per_row_us(predict, rows, 1, args.seconds),
            "batch_64_us_per_row": per_row_us(predict, rows, 64, args.seconds),
            "batch_1024_us_per_row": per_row_us(predict, rows, 1024, args.seconds),
        }
    np.save(os.path.join(args.out, "rows.npy"), rows)
    with open(os.path.join(args.out, "rows.json"), "w") as f:
        json.dump(rows.tolist(), f)
    expected = {
        "sklearn": rf.predict(rows[:256]).tolist(),
        "xgboost": booster.predict(rows[:256]).tolist(),
        "lightgbm": lgbm.predict(rows[:256]).tolist(),
        "onnxruntime": session.run(None, {input_name: rows[:256].astype(np.float32)})[0].reshape(-1).tolist(),
    }
    with open(os.path.join(args.out, "libraries.json"), "w") as f:
        json.dump({"models": dirs, "timings": timings, "expected_first_256": expected, "trees": TREES, "depth": DEPTH, "features": FEATURES}, f)
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
