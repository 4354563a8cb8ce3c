//! Resolving a ForecastModel's desired version in its MLflow registry.

use api::forecast_model::{ForecastModel, Selector};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use mlflow::{ClientConfig, Credentials, MlflowClient, MlflowError, ModelVersion, VersionSelector};

/// Registry credentials from the `credentialsSecret` (`token`, or `username`+`password`).
async fn credentials(
    client: &kube::Client,
    fm: &ForecastModel,
) -> Result<Credentials, MlflowError> {
    let Some(name) = &fm.spec.registry.credentials_secret else {
        return Ok(Credentials::None);
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &fm.namespace().unwrap_or_default());
    let secret = secrets
        .get(name)
        .await
        .map_err(|e| MlflowError::Config(format!("credentialsSecret {name}: {e}")))?;
    let value = |key: &str| -> Option<String> {
        if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
            return Some(v.clone());
        }
        // `data` arrives base64-decoded by k8s-openapi.
        let raw = secret.data.as_ref()?.get(key)?;
        String::from_utf8(raw.0.clone()).ok()
    };
    mlflow::credentials_from(value("token"), value("username"), value("password"))
}

pub fn to_mlflow(selector: &Selector) -> VersionSelector {
    match selector {
        Selector::Alias(a) => VersionSelector::Alias(a.clone()),
        Selector::Stage(s) => VersionSelector::Stage(s.clone()),
        Selector::Version(v) => VersionSelector::Version(v.clone()),
    }
}

/// MLflow clients by tracking URI and credentials, so connections are reused across
/// reconciles and ForecastModels.
#[derive(Default)]
pub struct RegistryClients {
    clients: std::sync::Mutex<std::collections::HashMap<String, MlflowClient>>,
}

impl RegistryClients {
    fn get(&self, uri: &str, creds: Credentials) -> Result<MlflowClient, MlflowError> {
        let key = match &creds {
            Credentials::None => format!("{uri}\n"),
            Credentials::Token(t) => format!("{uri}\ntoken\n{t}"),
            Credentials::Basic { username, password } => {
                format!("{uri}\nbasic\n{username}\n{password}")
            }
        };
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = MlflowClient::new(ClientConfig::new(uri).with_credentials(creds))?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Asks the registry which version `selector` points at.
pub async fn resolve(
    client: &kube::Client,
    clients: &RegistryClients,
    fm: &ForecastModel,
    selector: &Selector,
) -> Result<ModelVersion, MlflowError> {
    let creds = credentials(client, fm).await?;
    let registry = clients.get(&fm.spec.registry.tracking_uri, creds)?;
    registry
        .resolve_version(&fm.spec.model.name, &to_mlflow(selector))
        .await
}
