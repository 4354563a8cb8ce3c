//! Experiments, runs, params and metrics: what a trainer writes.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::json;

use crate::client::MlflowClient;
use crate::error::MlflowError;
use crate::types::{Experiment, Run};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl MlflowClient {
    /// The experiment called `name`, created when missing; returns its id.
    pub async fn ensure_experiment(&self, name: &str) -> Result<String, MlflowError> {
        #[derive(Deserialize)]
        struct Get {
            experiment: Experiment,
        }
        #[derive(Deserialize)]
        struct Created {
            experiment_id: String,
        }
        match self
            .get_json::<Get>("experiments/get-by-name", &[("experiment_name", name)])
            .await
        {
            Ok(g) => return Ok(g.experiment.experiment_id),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        match self
            .post_json::<_, Created>("experiments/create", &json!({ "name": name }))
            .await
        {
            Ok(c) => Ok(c.experiment_id),
            // Created concurrently by someone else: read it back.
            Err(MlflowError::AlreadyExists { .. }) => Ok(self
                .get_json::<Get>("experiments/get-by-name", &[("experiment_name", name)])
                .await?
                .experiment
                .experiment_id),
            Err(e) => Err(e),
        }
    }

    /// `runs/create`.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &[(&str, &str)],
    ) -> Result<Run, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            run: Run,
        }
        let tags: Vec<_> = tags
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        let r: R = self
            .post_json(
                "runs/create",
                &json!({
                    "experiment_id": experiment_id,
                    "run_name": run_name,
                    "start_time": now_ms(),
                    "tags": tags,
                }),
            )
            .await?;
        Ok(r.run)
    }

    /// `runs/get`.
    pub async fn get_run(&self, run_id: &str) -> Result<Run, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            run: Run,
        }
        let r: R = self.get_json("runs/get", &[("run_id", run_id)]).await?;
        Ok(r.run)
    }

    /// `runs/log-batch`: params and metrics (step 0, now).
    pub async fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        metrics: &[(String, f64)],
    ) -> Result<(), MlflowError> {
        let ts = now_ms();
        let params: Vec<_> = params
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        let metrics: Vec<_> = metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| json!({ "key": k, "value": v, "timestamp": ts, "step": 0 }))
            .collect();
        self.post_json::<_, serde_json::Value>(
            "runs/log-batch",
            &json!({ "run_id": run_id, "params": params, "metrics": metrics }),
        )
        .await
        .map(|_| ())
    }

    /// `runs/update` to a terminal status (`FINISHED`, `FAILED`).
    pub async fn end_run(&self, run_id: &str, status: &str) -> Result<(), MlflowError> {
        self.post_json::<_, serde_json::Value>(
            "runs/update",
            &json!({ "run_id": run_id, "status": status, "end_time": now_ms() }),
        )
        .await
        .map(|_| ())
    }
}
