//! The objects a ForecastModel owns, built as server-side-apply bodies (only the fields
//! the operator manages). Pure functions.

use api::forecast_model::{ForecastModel, Selector};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "forecast-operator";
/// Key of the served version in the owned ConfigMap.
pub const SERVED_VERSION_KEY: &str = "version";
/// Key of the admin token in the owned Secret.
pub const ADMIN_TOKEN_KEY: &str = "token";
/// Pod-template annotation the `Restart` strategy bumps.
pub const RESTART_ANNOTATION: &str = "forecast.dev/served-version";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

pub struct Names {
    pub deployment: String,
    pub service: String,
    pub config_map: String,
    pub secret: String,
}

pub fn names(fm: &ForecastModel) -> Names {
    let base = fm.name_any();
    Names {
        deployment: format!("{base}-predictor"),
        service: format!("{base}-predictor"),
        config_map: format!("{base}-served-version"),
        secret: format!("{base}-admin-token"),
    }
}

/// Labels on everything owned, and the pod selector.
pub fn selector_labels(fm: &ForecastModel) -> Value {
    json!({
        "app.kubernetes.io/name": "forecast-predictor",
        INSTANCE_LABEL: fm.name_any(),
    })
}

fn labels(fm: &ForecastModel) -> Value {
    let mut l = selector_labels(fm);
    l["app.kubernetes.io/managed-by"] = json!("forecast-operator");
    l["forecast.dev/model"] = json!(fm.spec.model.name);
    l
}

fn owner_reference(fm: &ForecastModel) -> Value {
    // controller_owner_ref is None only for an object without uid (never from the API).
    fm.controller_owner_ref(&())
        .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
        .unwrap_or(Value::Null)
}

fn metadata(fm: &ForecastModel, name: &str) -> Value {
    json!({
        "name": name,
        "namespace": fm.namespace().unwrap_or_default(),
        "labels": labels(fm),
        "ownerReferences": [owner_reference(fm)],
    })
}

pub fn config_map(fm: &ForecastModel, served_version: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(fm, &names(fm).config_map),
        "data": {SERVED_VERSION_KEY: served_version, "model": fm.spec.model.name},
    })
}

pub fn admin_secret(fm: &ForecastModel, token: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(fm, &names(fm).secret),
        "type": "Opaque",
        "stringData": {ADMIN_TOKEN_KEY: token},
    })
}

pub fn service(fm: &ForecastModel) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(fm, &names(fm).service),
        "spec": {
            "selector": selector_labels(fm),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    })
}

/// The predictor Deployment. The served version is not in the template (pods read it
/// from the ConfigMap at start), so changing it never restarts a pod; `restart_marker`
/// is set only by the `Restart` strategy.
pub fn deployment(fm: &ForecastModel, restart_marker: Option<&str>) -> Value {
    let n = names(fm);
    let spec = &fm.spec;
    let port = spec.predictor.port;
    let mut env = vec![
        json!({"name": "MLFLOW_TRACKING_URI", "value": spec.registry.tracking_uri}),
        json!({"name": "MODEL_NAME", "value": spec.model.name}),
        json!({"name": "MODEL_VERSION", "valueFrom": {"configMapKeyRef": {"name": n.config_map, "key": SERVED_VERSION_KEY, "optional": true}}}),
        json!({"name": "PREDICTOR_ADMIN_TOKEN", "valueFrom": {"secretKeyRef": {"name": n.secret, "key": ADMIN_TOKEN_KEY}}}),
        json!({"name": "BIND_ADDR", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
        json!({"name": "PORT", "value": port.to_string()}),
        json!({"name": "MODEL_FALLBACK_DIR", "value": "/var/lib/forecast/models"}),
    ];
    // Until the operator has recorded a served version, pods resolve the selector themselves.
    match spec.model.selector() {
        Ok(Selector::Alias(a)) => env.push(json!({"name": "MODEL_ALIAS", "value": a})),
        Ok(Selector::Stage(s)) => env.push(json!({"name": "MODEL_STAGE", "value": s})),
        _ => {}
    }
    if let Some(secret) = &spec.registry.credentials_secret {
        for (var, key) in [
            ("MLFLOW_TRACKING_TOKEN", "token"),
            ("MLFLOW_TRACKING_USERNAME", "username"),
            ("MLFLOW_TRACKING_PASSWORD", "password"),
        ] {
            env.push(json!({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": true}}}));
        }
    }
    for e in &spec.predictor.env {
        env.push(serde_json::to_value(e).unwrap_or(Value::Null));
    }
    let mut container = json!({
        "name": "predictor",
        "image": spec.predictor.image,
        "env": env,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3},
        "securityContext": {
            "runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
        // The image bundles a model at MODEL_FALLBACK_DIR; registry models are cached
        // in the writable cache/ under it (the root filesystem stays read-only).
        "volumeMounts": [{"name": "model-cache", "mountPath": "/var/lib/forecast/models/cache"}],
    });
    if let Some(r) = &spec.predictor.resources {
        container["resources"] = serde_json::to_value(r).unwrap_or(Value::Null);
    } else {
        container["resources"] =
            json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}});
    }
    let mut template_meta = json!({"labels": labels(fm)});
    if let Some(marker) = restart_marker {
        template_meta["annotations"] = json!({RESTART_ANNOTATION: marker});
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(fm, &n.deployment),
        "spec": {
            "replicas": spec.predictor.replicas,
            "selector": {"matchLabels": selector_labels(fm)},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "model-cache", "emptyDir": {}}],
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::forecast_model::ForecastModelSpec;

    fn fm() -> ForecastModel {
        let spec: ForecastModelSpec = serde_json::from_value(json!({
            "registry": {"trackingUri": "http://mlflow:5000", "credentialsSecret": "creds"},
            "model": {"name": "archive-forecast-rf", "alias": "champion"},
        }))
        .unwrap();
        let mut fm = ForecastModel::new("daily", spec);
        fm.metadata.namespace = Some("team".into());
        fm.metadata.uid = Some("uid-1".into());
        fm
    }

    #[test]
    fn the_deployment_reads_the_version_from_the_config_map_and_binds_the_pod_ip() {
        let d = deployment(&fm(), None);
        let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .clone();
        let find = |n: &str| env.iter().find(|e| e["name"] == n).cloned().unwrap();
        assert_eq!(
            find("MODEL_VERSION")["valueFrom"]["configMapKeyRef"]["name"],
            "daily-served-version"
        );
        assert_eq!(
            find("BIND_ADDR")["valueFrom"]["fieldRef"]["fieldPath"],
            "status.podIP"
        );
        assert_eq!(find("MODEL_ALIAS")["value"], "champion");
        assert_eq!(
            find("MLFLOW_TRACKING_TOKEN")["valueFrom"]["secretKeyRef"]["name"],
            "creds"
        );
        assert_eq!(d["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(d["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(d["spec"]["replicas"], 2);
        // The template is the same whatever version is served: no restarts on a rollout.
        assert_eq!(
            deployment(&fm(), None)["spec"]["template"],
            d["spec"]["template"]
        );
        assert_ne!(
            deployment(&fm(), Some("7"))["spec"]["template"],
            d["spec"]["template"]
        );
    }
}
