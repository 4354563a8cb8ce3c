//! The API server a conformance test runs against: an in-process kube-sim, or the real
//! kube-apiserver `cargo xtask test` started (`FORECAST_CLUSTER_KUBECONFIG`). On the real
//! server every test gets a namespace and a CRD group of its own, so the suite runs in
//! parallel as it does on kube-sim, and leaves nothing behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use kube_sim::{RunningSim, SimConfig};
use serde_json::json;

use crate::{eventually, rand_suffix, shell};

/// The image every test pod runs; both servers map it to `/bin/sh` (kube-sim through
/// `SimConfig::images`, the real cluster's node agent through `--run shell=/bin/sh`).
pub const SHELL_IMAGE: &str = "registry.local/shell:1";

pub struct Target {
    /// `kube-sim` or `kube-apiserver`, for failure messages.
    pub server: &'static str,
    pub client: Client,
    /// The namespace the test works in.
    pub ns: String,
    /// A kubeconfig whose current context is `ns`, for kubectl.
    pub kubeconfig: PathBuf,
    /// The API group of this test's `Widget` CRD, and the CRD's short name.
    pub group: String,
    pub short_name: String,
    sim: Option<RunningSim>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    pub async fn sim() -> Target {
        Target::sim_with(SimConfig::default()).await
    }

    pub async fn sim_with(mut config: SimConfig) -> Target {
        config.images.insert("shell".to_owned(), shell());
        let sim = kube_sim::start(config).await.expect("kube-sim starts");
        let client =
            Client::try_from(kube::Config::new(sim.url.parse().expect("url"))).expect("client");
        Target {
            server: "kube-sim",
            client,
            ns: "default".to_owned(),
            kubeconfig: sim.kubeconfig.clone(),
            group: "test.kube-sim.dev".to_owned(),
            short_name: "wd".to_owned(),
            sim: Some(sim),
            _dir: None,
        }
    }

    /// The real API server, when `cargo xtask test` started one; `None` otherwise.
    pub async fn real() -> Option<Target> {
        let admin = std::env::var_os("FORECAST_CLUSTER_KUBECONFIG").filter(|v| !v.is_empty())?;
        let suffix = rand_suffix();
        let ns = format!("conformance-{suffix}");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::copy(&admin, &kubeconfig).expect("copy the admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("kubeconfig config");
        let client = Client::try_from(config).expect("client");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create the test namespace");
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        eventually(
            "the namespace's default ServiceAccount",
            Duration::from_secs(30),
            || {
                let accounts = accounts.clone();
                async move { accounts.get_opt("default").await.ok().flatten().is_some() }
            },
        )
        .await;
        set_namespace(&kubeconfig, &ns);
        Some(Target {
            server: "kube-apiserver",
            client,
            ns,
            kubeconfig,
            group: format!("t{suffix}.test.kube-sim.dev"),
            short_name: format!("wd{suffix}"),
            sim: None,
            _dir: Some(dir),
        })
    }

    pub fn is_real(&self) -> bool {
        self.sim.is_none()
    }

    /// The in-process simulator (kube-sim targets only).
    pub fn running_sim(&self) -> Option<&RunningSim> {
        self.sim.as_ref()
    }

    pub fn crd_name(&self) -> String {
        format!("widgets.{}", self.group)
    }

    /// `kubectl ARGS…` against this target, in its namespace.
    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("kubectl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub async fn stop(self) {
        match self.sim {
            Some(sim) => sim.stop().await,
            None => {
                // Background deletion: the namespace controller and the CRD finalizer
                // clean up after the test without it waiting.
                let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
                let _ = crds
                    .delete(&self.crd_name(), &DeleteParams::default())
                    .await;
                let namespaces: Api<Namespace> = Api::all(self.client.clone());
                let _ = namespaces.delete(&self.ns, &DeleteParams::default()).await;
            }
        }
    }
}

fn set_namespace(kubeconfig: &Path, ns: &str) {
    let out = std::process::Command::new("kubectl")
        .args(["config", "set-context", "--current", "--namespace", ns])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
