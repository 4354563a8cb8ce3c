//! `spec.predictor.env` entries that read a Secret or a ConfigMap
//! (`valueFrom.secretKeyRef`, `valueFrom.configMapKeyRef`). The operator copies them into a
//! Deployment that runs an image the ForecastModel's author chose, so an author who may not
//! read a Secret would get it through the operator: a referenced object is used only when
//! whoever owns it labelled it `forecast.dev/predictor-env=true`, as `credentialsSecret`
//! needs its own label.

use std::collections::BTreeMap;

use api::forecast_model::ForecastModel;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, Secret};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::Result;

/// The label a Secret or ConfigMap must carry (value `true`) before `spec.predictor.env`
/// may read it.
pub const PREDICTOR_ENV_LABEL: &str = "forecast.dev/predictor-env";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Secret,
    ConfigMap,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
        }
    }
}

/// One object an env entry reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub variable: String,
    pub kind: Kind,
    pub name: String,
}

/// The Secrets and ConfigMaps the entries read, in order.
pub fn references(env: &[EnvVar]) -> Vec<Reference> {
    let mut out = Vec::new();
    for var in env {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(s) = &from.secret_key_ref {
            out.push(Reference {
                variable: var.name.clone(),
                kind: Kind::Secret,
                name: s.name.clone(),
            });
        }
        if let Some(c) = &from.config_map_key_ref {
            out.push(Reference {
                variable: var.name.clone(),
                kind: Kind::ConfigMap,
                name: c.name.clone(),
            });
        }
    }
    out
}

/// Whether the referenced object (its labels; `None`: it does not exist) may be read;
/// the error names the entry, the object and the label that opens it.
pub fn check(
    reference: &Reference,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<(), String> {
    let Reference {
        variable,
        kind,
        name,
    } = reference;
    let kind = kind.as_str();
    match labels {
        None => Err(format!(
            "spec.predictor.env[{variable}]: {kind} {name} not found"
        )),
        Some(l) if l.get(PREDICTOR_ENV_LABEL).map(String::as_str) == Some("true") => Ok(()),
        Some(_) => Err(format!(
            "spec.predictor.env[{variable}]: {kind} {name} lacks the label \
             {PREDICTOR_ENV_LABEL}=true; the operator gives the predictor only Secrets and \
             ConfigMaps labelled for it (kubectl label {} {name} {PREDICTOR_ENV_LABEL}=true)",
            kind.to_lowercase()
        )),
    }
}

/// Reads each object `fm`'s env refers to: `Ok(Err(message))` when one may not be used.
pub async fn check_all(
    ctx: &Context,
    fm: &ForecastModel,
) -> Result<std::result::Result<(), String>> {
    let refs = references(&fm.spec.predictor.env);
    if refs.is_empty() {
        return Ok(Ok(()));
    }
    let ns = fm.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    for r in &refs {
        // Only the labels are needed: metadata, never the values.
        let labels = match r.kind {
            Kind::Secret => secrets
                .get_metadata_opt(&r.name)
                .await?
                .map(|m| m.labels().clone()),
            Kind::ConfigMap => config_maps
                .get_metadata_opt(&r.name)
                .await?
                .map(|m| m.labels().clone()),
        };
        if let Err(message) = check(r, labels.as_ref()) {
            return Ok(Err(message));
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(v: serde_json::Value) -> Vec<EnvVar> {
        serde_json::from_value(v).expect("env")
    }

    #[test]
    fn secret_and_config_map_references_are_found_and_plain_values_are_not() {
        let e = env(json!([
            {"name": "PLAIN", "value": "x"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "CFG", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}
        ]));
        assert_eq!(
            references(&e),
            vec![
                Reference {
                    variable: "DB".into(),
                    kind: Kind::Secret,
                    name: "db".into()
                },
                Reference {
                    variable: "CFG".into(),
                    kind: Kind::ConfigMap,
                    name: "settings".into()
                },
            ]
        );
    }

    #[test]
    fn only_an_object_labelled_for_the_predictor_may_be_read() {
        let r = Reference {
            variable: "DB".into(),
            kind: Kind::Secret,
            name: "db".into(),
        };
        let labelled = BTreeMap::from([(PREDICTOR_ENV_LABEL.to_owned(), "true".to_owned())]);
        assert_eq!(check(&r, Some(&labelled)), Ok(()));
        let e = check(&r, Some(&BTreeMap::new())).unwrap_err();
        assert!(
            e.contains(
                "spec.predictor.env[DB]: Secret db lacks the label forecast.dev/predictor-env=true"
            ) && e.contains("kubectl label secret db"),
            "{e}"
        );
        let other = BTreeMap::from([(PREDICTOR_ENV_LABEL.to_owned(), "yes".to_owned())]);
        assert!(check(&r, Some(&other)).is_err());
        assert_eq!(
            check(&r, None).unwrap_err(),
            "spec.predictor.env[DB]: Secret db not found"
        );
    }
}
