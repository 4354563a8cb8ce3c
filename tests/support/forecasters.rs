//! The archive-forecast models `tests/python/log_forecasters.py` logs (once per test
//! binary): a forest, a boosted model and a model with other features, each registered
//! with MLflow's own `log_model` and an input example, and what scikit-learn forecasts.

use std::sync::OnceLock;

use serde_json::Value;

use crate::{Predictor, python_report, tracking_uri, unique_name};

pub struct Forecasters {
    pub name: String,
    pub report: Value,
}

pub fn forecasters() -> &'static Forecasters {
    static LOGGED: OnceLock<Forecasters> = OnceLock::new();
    LOGGED.get_or_init(|| {
        let name = unique_name("forecast");
        let (_dir, report) = python_report("log_forecasters.py", &name, &[]);
        Forecasters { name, report }
    })
}

impl Forecasters {
    /// The registered version of `kind` (`forest`, `boosting`, `other`).
    pub fn version(&self, kind: &str) -> String {
        self.report["versions"][kind]
            .as_str()
            .unwrap_or_else(|| panic!("no logged {kind}"))
            .to_owned()
    }

    /// A predictor serving `kind`, with `extra` environment.
    pub fn serve(&self, kind: &str, extra: &[(&str, String)]) -> Predictor {
        let mut env = vec![
            ("MLFLOW_TRACKING_URI", tracking_uri()),
            ("MODEL_NAME", self.name.clone()),
            ("MODEL_VERSION", self.version(kind)),
        ];
        env.extend(extra.iter().cloned());
        Predictor::start(&env).expect("predictor")
    }
}
