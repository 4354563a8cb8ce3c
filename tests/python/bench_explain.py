"""Per-row cost of `shap.TreeExplainer` (exact path-dependent TreeSHAP, its C++ extension)
on the 100-tree depth-10 scikit-learn forest `bench_libraries.py` saved, single thread,
batch 1 and batch 1024; and its values for the first rows, for `cargo xtask bench
--part explain` to compare the predictor's explanations with.

Usage: bench_explain.py --models DIR [--seconds 2]
"""

import argparse
import json
import os
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

import mlflow.sklearn  # noqa: E402
import numpy as np  # noqa: E402
import shap  # noqa: E402

from bench_libraries import per_row_us  # noqa: E402

COMPARED_ROWS = 64


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", required=True)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    forest = mlflow.sklearn.load_model(os.path.join(args.models, "sklearn"))
    rows = np.load(os.path.join(args.models, "rows.npy"))
    # Built once, as a service would keep it; each call explains one batch.
    explainer = shap.TreeExplainer(forest)
    timings = {
        "batch_1_us_per_row": per_row_us(explainer.shap_values, rows, 1, args.seconds),
        "batch_1024_us_per_row": per_row_us(explainer.shap_values, rows, 1024, args.seconds),
    }
    values = np.asarray(explainer.shap_values(rows[:COMPARED_ROWS]), dtype=np.float64)
    with open(os.path.join(args.models, "explain.json"), "w") as f:
        json.dump(
            {
                "timings": timings,
                "shap_values": values.tolist(),
                "expected_value": float(np.ravel(explainer.expected_value)[0]),
            },
            f,
        )
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
