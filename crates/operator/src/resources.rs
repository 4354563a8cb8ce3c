//! The objects a ForecastModel owns, built as typed `k8s-openapi` objects that hold only
//! the fields the operator manages (its server-side-apply bodies). Pure functions.

use std::collections::BTreeMap;

use api::forecast_model::{ForecastModel, Selector};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapKeySelector, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

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

/// The uid of the controller ownerReference of `meta`, with its kind.
pub fn controller_of(meta: &ObjectMeta) -> Option<(&str, &str)> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.as_str(), o.uid.as_str()))
}

/// Whether `meta` is controlled by `fm` (its controller ownerReference has fm's uid).
pub fn controlled_by(meta: &ObjectMeta, fm: &ForecastModel) -> bool {
    let uid = fm.metadata.uid.as_deref();
    controller_of(meta).is_some_and(|(_, owner)| Some(owner) == uid)
}

/// Labels on everything owned, and the pod selector.
pub fn selector_labels(fm: &ForecastModel) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".into(),
            crate::pod_index::PREDICTOR_APP.into(),
        ),
        (INSTANCE_LABEL.into(), fm.name_any()),
    ])
}

fn labels(fm: &ForecastModel) -> BTreeMap<String, String> {
    let mut l = selector_labels(fm);
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "forecast-operator".into(),
    );
    l.insert("forecast.dev/model".into(), fm.spec.model.name.clone());
    l
}

fn metadata(fm: &ForecastModel, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: fm.namespace(),
        labels: Some(labels(fm)),
        // None only for an object without uid (never one read from the API).
        owner_references: fm.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

pub fn config_map(fm: &ForecastModel, served_version: &str) -> ConfigMap {
    ConfigMap {
        metadata: metadata(fm, &names(fm).config_map),
        data: Some(BTreeMap::from([
            (SERVED_VERSION_KEY.into(), served_version.into()),
            ("model".into(), fm.spec.model.name.clone()),
        ])),
        ..ConfigMap::default()
    }
}

pub fn admin_secret(fm: &ForecastModel, token: &str) -> Secret {
    Secret {
        metadata: metadata(fm, &names(fm).secret),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(ADMIN_TOKEN_KEY.into(), token.into())])),
        ..Secret::default()
    }
}

pub fn service(fm: &ForecastModel) -> Service {
    Service {
        metadata: metadata(fm, &names(fm).service),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(fm)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn env_value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(source),
        ..EnvVar::default()
    }
}

fn secret_key(secret: &str, key: &str, optional: bool) -> EnvVarSource {
    EnvVarSource {
        secret_key_ref: Some(SecretKeySelector {
            name: secret.into(),
            key: key.into(),
            optional: optional.then_some(true),
        }),
        ..EnvVarSource::default()
    }
}

/// The predictor's environment: where the registry is, which model, and where the served
/// version and the admin token come from.
fn predictor_env(
    fm: &ForecastModel,
    credentials_secret: Option<&str>,
    registry_proxy: Option<&str>,
) -> Vec<EnvVar> {
    let n = names(fm);
    let spec = &fm.spec;
    let mut env = vec![
        env_value("MLFLOW_TRACKING_URI", &spec.registry.tracking_uri),
        env_value("MODEL_NAME", &spec.model.name),
        env_from(
            "MODEL_VERSION",
            EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: n.config_map.clone(),
                    key: SERVED_VERSION_KEY.into(),
                    optional: Some(true),
                }),
                ..EnvVarSource::default()
            },
        ),
        env_from(
            "PREDICTOR_ADMIN_TOKEN",
            secret_key(&n.secret, ADMIN_TOKEN_KEY, false),
        ),
        env_from(
            "BIND_ADDR",
            EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            },
        ),
        env_value("PORT", spec.predictor.port.to_string()),
        env_value("MODEL_FALLBACK_DIR", "/var/lib/forecast/models"),
    ];
    // Until the operator has recorded a served version, pods resolve the selector themselves.
    match spec.model.selector() {
        Ok(Selector::Alias(a)) => env.push(env_value("MODEL_ALIAS", a)),
        Ok(Selector::Stage(s)) => env.push(env_value("MODEL_STAGE", s)),
        _ => {}
    }
    if let Some(secret) = credentials_secret {
        for (var, key) in [
            ("MLFLOW_TRACKING_TOKEN", "token"),
            ("MLFLOW_TRACKING_USERNAME", "username"),
            ("MLFLOW_TRACKING_PASSWORD", "password"),
        ] {
            env.push(env_from(var, secret_key(secret, key, true)));
        }
    }
    if let Some(proxy) = registry_proxy {
        env.push(env_value("MLFLOW_PROXY", proxy));
    }
    // A name given again replaces the earlier entry (reserved names never get here: the
    // spec check refuses them): server-side apply refuses a list with duplicate names, as
    // the real API server does for `env` keyed by name.
    for var in &spec.predictor.env {
        match env.iter_mut().find(|e| e.name == var.name) {
            Some(existing) => *existing = var.clone(),
            None => env.push(var.clone()),
        }
    }
    env
}

fn http_probe(path: &str, period_seconds: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.into());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), q("100m")),
            ("memory".into(), q("64Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), q("256Mi"))])),
        ..ResourceRequirements::default()
    }
}

fn predictor_container(
    fm: &ForecastModel,
    credentials_secret: Option<&str>,
    registry_proxy: Option<&str>,
) -> Container {
    let spec = &fm.spec;
    Container {
        name: "predictor".into(),
        image: Some(spec.predictor.image.clone()),
        env: Some(predictor_env(fm, credentials_secret, registry_proxy)),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: spec.predictor.port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(http_probe("/ready", 2)),
        liveness_probe: Some(http_probe("/health", 10)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        // The image bundles a model at MODEL_FALLBACK_DIR; registry models are cached
        // in the writable cache/ under it (the root filesystem stays read-only).
        volume_mounts: Some(vec![VolumeMount {
            name: "model-cache".into(),
            mount_path: "/var/lib/forecast/models/cache".into(),
            ..VolumeMount::default()
        }]),
        resources: Some(
            spec.predictor
                .resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        ..Container::default()
    }
}

/// Size limit of a predictor pod's model cache volume.
pub const CACHE_SIZE_LIMIT: &str = "1Gi";

/// Environment variables the operator sets on the predictor and `spec.predictor.env` may
/// not override: they carry the checked tracking URI, the credentials, the admin token and
/// the served version.
pub const RESERVED_ENV: &[&str] = &[
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MODEL_NAME",
    "MODEL_VERSION",
    "MODEL_ALIAS",
    "MODEL_STAGE",
    "PREDICTOR_ADMIN_TOKEN",
    "BIND_ADDR",
    "PORT",
    // Where the registry calls (with their Authorization header) go: the predictor's
    // client ignores the proxy variables, and takes `MLFLOW_PROXY` only from the
    // operator's own `PREDICTOR_REGISTRY_PROXY`.
    "MLFLOW_PROXY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// The predictor Deployment. The served version is not in the template (pods read it
/// from the ConfigMap at start), so changing it never restarts a pod; `restart_marker`
/// is set only by the `Restart` strategy. `credentials_secret` is the `credentialsSecret`
/// once it was checked to be labelled for registry credentials.
pub fn deployment(
    fm: &ForecastModel,
    restart_marker: Option<&str>,
    credentials_secret: Option<&str>,
    registry_proxy: Option<&str>,
) -> Deployment {
    let template_metadata = ObjectMeta {
        labels: Some(labels(fm)),
        annotations: restart_marker
            .map(|m| BTreeMap::from([(RESTART_ANNOTATION.into(), m.to_owned())])),
        ..ObjectMeta::default()
    };
    Deployment {
        metadata: metadata(fm, &names(fm).deployment),
        spec: DeploymentSpec {
            replicas: Some(fm.spec.predictor.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(fm)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(template_metadata),
                spec: Some(PodSpec {
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        fs_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![predictor_container(fm, credentials_secret, registry_proxy)],
                    volumes: Some(vec![Volume {
                        name: "model-cache".into(),
                        // MODEL_CACHE_VERSIONS (3) versions of at most MODEL_MAX_BYTES
                        // (256 MiB) each, and one being downloaded.
                        empty_dir: Some(EmptyDirVolumeSource {
                            size_limit: Some(Quantity(CACHE_SIZE_LIMIT.into())),
                            ..EmptyDirVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    // The predictor never talks to the Kubernetes API.
                    automount_service_account_token: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
