"""Registers a corrupt version of a model and points an alias at it (the soak's "corrupt
version" fault): the model directory's files are copied, its ensemble file is cut in
half, and the directory is logged as a run's artifacts with MLflow's own client.

    python register_corrupt.py --tracking-uri URI --name NAME --model-dir DIR [--alias A]

Prints the new version number.
"""

import argparse
import os
import shutil
import tempfile

from mlflow.tracking import MlflowClient


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--alias", default="champion")
    args = parser.parse_args()

    client = MlflowClient(tracking_uri=args.tracking_uri)
    with tempfile.TemporaryDirectory() as work:
        model = os.path.join(work, "model")
        shutil.copytree(args.model_dir, model)
        for name in os.listdir(model):
            path = os.path.join(model, name)
            if name != "MLmodel" and os.path.isfile(path):
                size = os.path.getsize(path)
                with open(path, "r+b") as f:
                    f.truncate(size // 2)
        experiment = client.get_experiment_by_name("soak")
        experiment_id = (
            experiment.experiment_id if experiment else client.create_experiment("soak")
        )
        run = client.create_run(experiment_id)
        client.log_artifacts(run.info.run_id, model, artifact_path="model")
        client.set_terminated(run.info.run_id)
        try:
            client.create_registered_model(args.name)
        except Exception:  # noqa: BLE001 - it exists
            pass
        version = client.create_model_version(
            args.name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
        )
        client.set_registered_model_alias(args.name, args.alias, version.version)
        print(version.version)


if __name__ == "__main__":
    main()
