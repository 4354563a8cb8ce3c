"""MLflow's own scoring client against a running predictor, as a client of
`mlflow models serve` would use it. Exits non-zero if anything differs.

Usage: scoring_client.py --port PORT --report REPORT.json --case LABEL
"""

import argparse
import json
import sys
import warnings

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.pyfunc.scoring_server.client import ScoringServerClient  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--case", required=True)
    args = parser.parse_args()
    with open(args.report) as f:
        report = json.load(f)
    case = next(c for c in report["cases"] if c["label"] == args.case)
    rows = np.array([[np.nan if v is None else v for v in row] for row in report["rows"][case["rows"]]])
    expected = np.array(case["expected"])
    frame = pd.DataFrame(rows, columns=case["feature_names"])

    client = ScoringServerClient("127.0.0.1", args.port)
    client.wait_server_ready(timeout=30)
    version = client.get_version()
    results = {"version": version}
    for label, data, params in [
        ("dataframe", frame, None),
        ("dataframe with params", frame, {"temperature": 0.5}),
        ("numpy array", rows, None),
    ]:
        got = np.asarray(client.invoke(data, params=params).get_predictions()).reshape(-1)
        worst = float(np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-12)))
        results[label] = worst
        if got.shape != expected.shape or worst > case["tolerance"]:
            print(json.dumps(results))
            sys.exit(f"{label}: predictions differ from the library's by {worst}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
