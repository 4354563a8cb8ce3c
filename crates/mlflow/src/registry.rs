//! Model-registry reads and writes.

use serde::Deserialize;
use serde_json::json;

use crate::client::MlflowClient;
use crate::error::MlflowError;
use crate::types::{ModelVersion, RegisteredModel};

/// MLflow caps `max_results` of searches; pages are followed until exhausted.
const SEARCH_PAGE_SIZE: &str = "200";

impl MlflowClient {
    /// `registered-models/get`: the model with its aliases and latest versions per stage.
    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            registered_model: RegisteredModel,
        }
        let r: R = self
            .get_json("registered-models/get", &[("name", name)])
            .await?;
        Ok(r.registered_model)
    }

    /// `registered-models/alias`: the version an alias points at.
    pub async fn get_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion, MlflowError> {
        self.get_model_version_from(
            "registered-models/alias",
            &[("name", name), ("alias", alias)],
        )
        .await
    }

    /// `model-versions/get`.
    pub async fn get_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<ModelVersion, MlflowError> {
        self.get_model_version_from(
            "model-versions/get",
            &[("name", name), ("version", version)],
        )
        .await
    }

    /// A GET of an endpoint that answers `{"model_version": {...}}`.
    async fn get_model_version_from(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<ModelVersion, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            model_version: ModelVersion,
        }
        let r: R = self.get_json(endpoint, query).await?;
        Ok(r.model_version)
    }

    /// `registered-models/get-latest-versions` for one stage: the newest version in it.
    pub async fn get_latest_version_in_stage(
        &self,
        name: &str,
        stage: &str,
    ) -> Result<ModelVersion, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            #[serde(default)]
            model_versions: Vec<ModelVersion>,
        }
        let r: R = self
            .post_json(
                "registered-models/get-latest-versions",
                &json!({"name": name, "stages": [stage]}),
            )
            .await?;
        r.model_versions
            .into_iter()
            .filter(|v| {
                v.current_stage
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(stage))
            })
            .max_by_key(ModelVersion::number)
            .ok_or_else(|| MlflowError::NotFound {
                message: format!("registered model {name} has no version in stage {stage}"),
            })
    }

    /// `registered-models/search`, every page.
    pub async fn search_registered_models(
        &self,
        filter: Option<&str>,
    ) -> Result<Vec<RegisteredModel>, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            #[serde(default)]
            registered_models: Vec<RegisteredModel>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("max_results", SEARCH_PAGE_SIZE)];
            if let Some(f) = filter {
                query.push(("filter", f));
            }
            if let Some(t) = token.as_deref() {
                query.push(("page_token", t));
            }
            let page: R = self.get_json("registered-models/search", &query).await?;
            out.extend(page.registered_models);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// `model-versions/search`, every page (e.g. `name='archive-forecast-rf'`).
    pub async fn search_model_versions(
        &self,
        filter: &str,
    ) -> Result<Vec<ModelVersion>, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            #[serde(default)]
            model_versions: Vec<ModelVersion>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("max_results", SEARCH_PAGE_SIZE), ("filter", filter)];
            if let Some(t) = token.as_deref() {
                query.push(("page_token", t));
            }
            let page: R = self.get_json("model-versions/search", &query).await?;
            out.extend(page.model_versions);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// `registered-models/create`; an existing model is returned as is.
    pub async fn ensure_registered_model(
        &self,
        name: &str,
    ) -> Result<RegisteredModel, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            registered_model: RegisteredModel,
        }
        match self
            .post_json::<_, R>("registered-models/create", &json!({ "name": name }))
            .await
        {
            Ok(r) => Ok(r.registered_model),
            Err(MlflowError::AlreadyExists { .. }) => self.get_registered_model(name).await,
            Err(e) => Err(e),
        }
    }

    /// `model-versions/create` from a source URI (and the run that produced it).
    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: Option<&str>,
    ) -> Result<ModelVersion, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            model_version: ModelVersion,
        }
        let mut body = json!({ "name": name, "source": source });
        if let Some(run_id) = run_id {
            body["run_id"] = json!(run_id);
        }
        let r: R = self.post_json("model-versions/create", &body).await?;
        Ok(r.model_version)
    }

    /// `registered-models/alias` (POST): points `alias` at `version`.
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        self.post_json::<_, serde_json::Value>(
            "registered-models/alias",
            &json!({ "name": name, "alias": alias, "version": version }),
        )
        .await
        .map(|_| ())
    }

    /// `registered-models/alias` (DELETE).
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), MlflowError> {
        self.delete_json(
            "registered-models/alias",
            &json!({ "name": name, "alias": alias }),
        )
        .await
    }

    /// `model-versions/transition-stage`.
    pub async fn transition_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing_versions: bool,
    ) -> Result<ModelVersion, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            model_version: ModelVersion,
        }
        let r: R = self
            .post_json(
                "model-versions/transition-stage",
                &json!({
                    "name": name,
                    "version": version,
                    "stage": stage,
                    "archive_existing_versions": archive_existing_versions,
                }),
            )
            .await?;
        Ok(r.model_version)
    }
}
