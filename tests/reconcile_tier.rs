//! The test tier below end to end: `reconcile()` called in this process against kube-sim
//! (or the cluster KUBECONFIG names) and the real MLflow of the test run, for the paths
//! that need no predictor pods. Each reconcile is one call; what it did is read back from
//! the API server as a user would (`kubectl get fm -o yaml`, events, owned objects).

use std::sync::Arc;
use std::time::Duration;

use api::reasons;
use forecast_e2e::cluster::{TestCluster, wait_until};
use forecast_e2e::{authenticated_registry, closed_port, mlflow_client, tracking_uri};
use forecast_e2e::{train_and_register, unique_name};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use operator::context::Context;
use operator::memory::Memory;
use operator::metrics::Metrics;
use operator::registry::Registry;
use serde_json::{Value, json};

/// A cluster without predictor processes, and the operator's `Context` in this process.
struct Tier {
    cluster: TestCluster,
    ctx: Arc<Context>,
}

impl Tier {
    async fn start() -> Tier {
        Tier::start_with(operator::policy::SpecPolicy::default()).await
    }

    /// With the operator-wide allow-lists of `policy`.
    async fn start_with(policy: operator::policy::SpecPolicy) -> Tier {
        let cluster = TestCluster::start_simulated_without_pods().await;
        let metrics = Arc::new(Metrics::default());
        let registry = Arc::new(Registry::new(Duration::ZERO, metrics.clone()));
        let (caches, subscriptions, watches) =
            operator::cache::start(&cluster.client, Some(&cluster.namespace)).expect("caches");
        tokio::spawn(watches);
        // Nobody else reads the change notifications here.
        tokio::spawn(subscriptions.deployments.for_each(|_| async {}));
        tokio::spawn(subscriptions.services.for_each(|_| async {}));
        tokio::spawn(subscriptions.config_maps.for_each(|_| async {}));
        tokio::spawn(subscriptions.pods.for_each(|_| async {}));
        let mut ctx = Context::new(
            cluster.client.clone(),
            metrics,
            registry,
            caches,
            Arc::new(Memory::default()),
            "reconcile-tier".into(),
        );
        ctx.policy = policy;
        Tier {
            cluster,
            ctx: Arc::new(ctx),
        }
    }

    /// Applies a ForecastModel as a user would and reconciles it once.
    async fn apply_and_reconcile(&self, name: &str, spec: Value) -> Result<Action, String> {
        self.cluster.apply_fm(name, spec).await;
        self.reconcile(name).await
    }

    /// One reconcile of the ForecastModel as the API server has it now.
    async fn reconcile(&self, name: &str) -> Result<Action, String> {
        let fm = self.cluster.fms().get(name).await.expect("ForecastModel");
        operator::reconcile::reconcile(Arc::new(fm), self.ctx.clone())
            .await
            .map_err(|e| e.to_string())
    }

    async fn condition(&self, name: &str, kind: &str) -> (String, String) {
        let c = self.cluster.condition(name, kind).await;
        c.unwrap_or_else(|| panic!("{name} has no {kind} condition"))
    }

    /// The message of the `Degraded` condition (empty when there is none).
    async fn degraded_message(&self, name: &str) -> String {
        let status = self.cluster.status(name).await;
        status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Degraded"))
            .and_then(|c| c["message"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    async fn config_map_version(&self, name: &str) -> Option<String> {
        let cms: Api<ConfigMap> =
            Api::namespaced(self.cluster.client.clone(), &self.cluster.namespace);
        let cm = cms
            .get_opt(&format!("{name}-served-version"))
            .await
            .expect("get");
        cm.and_then(|c| c.data?.get("version").cloned())
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.cluster.client.clone(), &self.cluster.namespace)
    }
}

fn is(status: &str, reason: &str) -> (String, String) {
    (status.into(), reason.into())
}

fn spec(uri: &str, model: Value) -> Value {
    json!({"registry": {"trackingUri": uri}, "model": model, "predictor": {"replicas": 1}})
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_creates_nothing() {
    let tier = Tier::start().await;
    let mut s = spec(&tracking_uri(), json!({"name": "m", "alias": "champion"}));
    s["pollInterval"] = json!("0s");
    let action = tier.apply_and_reconcile("bad", s).await.expect("reconcile");
    assert_eq!(
        action,
        Action::await_change(),
        "only a spec change can help"
    );
    assert_eq!(
        tier.condition("bad", "Ready").await,
        is("False", reasons::INVALID_SPEC)
    );
    assert_eq!(
        tier.condition("bad", "Degraded").await,
        is("True", reasons::INVALID_SPEC)
    );
    let message = tier.degraded_message("bad").await;
    assert!(message.contains("spec.pollInterval"), "{message}");
    assert_eq!(
        tier.condition("bad", "Stalled").await,
        is("True", reasons::INVALID_SPEC)
    );
    tier.cluster.capture_fixture("bad", "invalid-spec").await;
    let (code, said) = tier.cluster.forecastctl_wait("bad", "30s");
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("bad: Failed: InvalidSpec"), "{said}");
    assert_eq!(tier.cluster.events(reasons::INVALID_SPEC).await, 1);
    assert!(
        tier.deployments()
            .get_opt("bad-predictor")
            .await
            .expect("get")
            .is_none()
    );
    // Reconciled again unchanged: nothing new is said.
    tier.reconcile("bad").await.expect("reconcile");
    assert_eq!(tier.cluster.events(reasons::INVALID_SPEC).await, 1);
    tier.cluster.stop().await;
}

#[tokio::test]
async fn a_missing_credentials_secret_sends_nothing_and_says_which() {
    let tier = Tier::start().await;
    let mut s = spec(&tracking_uri(), json!({"name": "m", "alias": "champion"}));
    s["registry"]["credentialsSecret"] = json!("no-such-secret");
    tier.apply_and_reconcile("creds", s)
        .await
        .expect("reconcile");
    assert_eq!(
        tier.condition("creds", "Degraded").await,
        is("True", reasons::REGISTRY_CREDENTIALS)
    );
    assert_eq!(
        tier.condition("creds", "RegistryReachable").await,
        is("Unknown", reasons::NOT_ASKED)
    );
    assert_eq!(
        tier.config_map_version("creds").await,
        None,
        "no version was chosen"
    );
    tier.cluster.stop().await;
}

#[tokio::test]
async fn an_unreachable_registry_is_asked_again_soon_and_told_once() {
    let tier = Tier::start().await;
    let uri = format!("http://127.0.0.1:{}", closed_port());
    let action = tier
        .apply_and_reconcile(
            "down",
            spec(&uri, json!({"name": "m", "alias": "champion"})),
        )
        .await
        .expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    assert_eq!(
        tier.condition("down", "RegistryReachable").await,
        is("False", reasons::UNREACHABLE)
    );
    assert_eq!(
        tier.condition("down", "Ready").await,
        is("False", reasons::NO_VERSION)
    );
    tier.reconcile("down").await.expect("reconcile");
    assert_eq!(tier.cluster.events(reasons::REGISTRY_UNREACHABLE).await, 1);
    tier.cluster.stop().await;
}

#[tokio::test]
async fn refused_credentials_are_unauthorized() {
    let tier = Tier::start().await;
    let (uri, user, _) = authenticated_registry();
    let secrets: Api<Secret> =
        Api::namespaced(tier.cluster.client.clone(), &tier.cluster.namespace);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "wrong-creds", "labels": {"forecast.dev/secret-type": "registry-credentials"}},
        "stringData": {"username": user, "password": "not-the-password"},
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let mut s = spec(&uri, json!({"name": "m", "alias": "champion"}));
    s["registry"]["credentialsSecret"] = json!("wrong-creds");
    tier.apply_and_reconcile("unauth", s)
        .await
        .expect("reconcile");
    assert_eq!(
        tier.condition("unauth", "Degraded").await,
        is("True", reasons::REGISTRY_UNAUTHORIZED)
    );
    assert_eq!(
        tier.condition("unauth", "RegistryReachable").await,
        is("True", reasons::REACHABLE)
    );
    tier.cluster.stop().await;
}

#[tokio::test]
async fn an_alias_that_points_nowhere_is_version_not_found() {
    let tier = Tier::start().await;
    let name = unique_name("tier-missing");
    train_and_register(&name, 1, &["--alias", "champion"]).expect("register");
    tier.apply_and_reconcile(
        "missing",
        spec(&tracking_uri(), json!({"name": name, "alias": "nobody"})),
    )
    .await
    .expect("reconcile");
    assert_eq!(
        tier.condition("missing", "Degraded").await,
        is("True", reasons::VERSION_NOT_FOUND)
    );
    assert_eq!(
        tier.condition("missing", "Ready").await,
        is("False", reasons::NO_VERSION)
    );
    tier.cluster.stop().await;
}

#[tokio::test]
async fn a_pin_is_served_whatever_the_alias_says_and_pause_holds_a_moved_alias() {
    let tier = Tier::start().await;
    let name = unique_name("tier-pin");
    let v1 = train_and_register(&name, 1, &["--alias", "champion"]).expect("v1");
    let v2 = train_and_register(&name, 2, &[]).expect("v2");

    // A pin: the ConfigMap pods start on says v1 even though nobody points an alias at it.
    mlflow_client()
        .set_alias(&name, "champion", &v2)
        .await
        .expect("alias");
    tier.apply_and_reconcile(
        "pinned",
        spec(&tracking_uri(), json!({"name": name, "version": v1})),
    )
    .await
    .expect("reconcile");
    assert_eq!(tier.config_map_version("pinned").await, Some(v1.clone()));
    // Just created: deployed, no pod ready yet (this tier runs none) — in progress.
    assert_eq!(
        tier.condition("pinned", "Reconciling").await,
        is("True", reasons::CONVERGING)
    );
    tier.cluster.capture_fixture("pinned", "created").await;
    // No pod ever comes up in this tier: a CI step waiting on it times out, saying why.
    let (code, said) = tier.cluster.forecastctl_wait("pinned", "2s");
    assert_eq!(code, 2, "{said}");
    assert!(said.contains("pinned: InProgress: Converging"), "{said}");
    let status = tier.cluster.status("pinned").await;
    assert_eq!(status["selector"], format!("version:{v1}"));
    assert_eq!(status["desiredVersion"], v1.as_str());

    // Paused: the first deployment happens, later moves of the alias are held.
    mlflow_client()
        .set_alias(&name, "champion", &v1)
        .await
        .expect("alias");
    let mut paused = spec(&tracking_uri(), json!({"name": name, "alias": "champion"}));
    paused["paused"] = json!(true);
    tier.apply_and_reconcile("paused", paused)
        .await
        .expect("reconcile");
    assert_eq!(tier.config_map_version("paused").await, Some(v1.clone()));
    mlflow_client()
        .set_alias(&name, "champion", &v2)
        .await
        .expect("alias");
    tier.reconcile("paused").await.expect("reconcile");
    let status = tier.cluster.status("paused").await;
    assert_eq!(
        status["desiredVersion"],
        v2.as_str(),
        "the registry's answer is shown"
    );
    assert_eq!(status["servedVersion"], v1.as_str(), "and not acted on");
    assert_eq!(tier.config_map_version("paused").await, Some(v1));
    assert_eq!(tier.cluster.events(reasons::ROLLOUT_STARTED).await, 0);
    tier.cluster.stop().await;
}

#[tokio::test]
async fn an_owned_deployment_edited_by_someone_else_is_put_back() {
    let tier = Tier::start().await;
    let name = unique_name("tier-owned");
    train_and_register(&name, 1, &["--alias", "champion"]).expect("v1");
    tier.apply_and_reconcile(
        "owned",
        spec(&tracking_uri(), json!({"name": name, "alias": "champion"})),
    )
    .await
    .expect("reconcile");
    let deployment = tier
        .deployments()
        .get("owned-predictor")
        .await
        .expect("created");
    assert_eq!(deployment.spec.replicas, Some(1));
    let owner = &deployment.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("ForecastModel", Some(true))
    );

    // Someone scales it by hand (another field manager, forced).
    let edited = tier
        .deployments()
        .patch(
            "owned-predictor",
            &PatchParams::apply("someone").force(),
            &Patch::Apply(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "owned-predictor"}, "spec": {"replicas": 5}}),
            ),
        )
        .await
        .expect("edit");
    let generation = edited.metadata.generation;
    // The reconcile reads the watched copy: wait until the watch has delivered the edit.
    let cache = tier.ctx.caches.deployments.clone();
    let key = ObjectRef::new("owned-predictor").within(&tier.cluster.namespace);
    wait_until("the cache shows the edit", Duration::from_secs(10), || {
        let seen = cache.get(&key).and_then(|d| d.metadata.generation);
        async move { seen == generation }
    })
    .await;
    tier.reconcile("owned").await.expect("reconcile");
    let deployment = tier
        .deployments()
        .get("owned-predictor")
        .await
        .expect("get");
    assert_eq!(
        deployment.spec.replicas,
        Some(1),
        "the spec's replicas are back"
    );
    tier.cluster.stop().await;
}

#[tokio::test]
async fn what_is_remembered_is_dropped_when_the_forecast_model_goes() {
    let tier = Tier::start().await;
    let memory = tier.ctx.memory.clone();
    let watched = kube::runtime::watcher(tier.cluster.fms(), Default::default());
    let metrics = tier.ctx.metrics.clone();
    tokio::spawn(
        operator::memory::forget_deleted(watched, memory.clone(), metrics).for_each(|_| async {}),
    );
    let uri = format!("http://127.0.0.1:{}", closed_port());
    for name in ["a", "b", "c"] {
        tier.apply_and_reconcile(name, spec(&uri, json!({"name": "m", "alias": "champion"})))
            .await
            .expect("reconcile");
    }
    assert_eq!(memory.len(), 3);
    for name in ["a", "b"] {
        tier.cluster
            .fms()
            .delete(name, &Default::default())
            .await
            .expect("delete");
    }
    let left = memory.clone();
    wait_until(
        "the records of deleted ForecastModels are dropped",
        Duration::from_secs(10),
        || {
            let n = left.len();
            async move { n == 1 }
        },
    )
    .await;
    tier.cluster.stop().await;
}

/// A registry that records every request it gets and answers each with an endless JSON
/// body (up to 1 GiB, until the client hangs up).
struct HostileRegistry {
    uri: String,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
}

impl HostileRegistry {
    async fn start() -> HostileRegistry {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let uri = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = vec![0u8; 16 * 1024];
                    let n = socket.read(&mut head).await.unwrap_or(0);
                    if let Ok(mut s) = seen.lock() {
                        s.push(String::from_utf8_lossy(&head[..n]).into_owned());
                    }
                    let header = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"model_version\": \"";
                    if socket.write_all(header.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'9'; 64 * 1024];
                    for _ in 0..(1024 * 1024 * 1024 / chunk.len()) {
                        if socket.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HostileRegistry { uri, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

#[tokio::test]
async fn a_registry_answering_a_gigabyte_is_cut_off_and_reported() {
    let tier = Tier::start().await;
    let registry = HostileRegistry::start().await;
    tier.apply_and_reconcile(
        "huge",
        spec(&registry.uri, json!({"name": "m", "alias": "champion"})),
    )
    .await
    .expect("reconcile");
    assert_eq!(
        tier.condition("huge", "Degraded").await,
        is("True", reasons::REGISTRY_ERROR)
    );
    let message = tier.degraded_message("huge").await;
    assert!(message.contains("larger than 4194304 bytes"), "{message}");
    assert_eq!(registry.requests().len(), 1);
    // The reconcile ran in this process: its peak memory shows the body was never held
    // (the operator's limit is 128 MiB; this process also holds the other tests).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(peak_kib < 512 * 1024, "peak RSS {peak_kib} KiB");
    tier.cluster.stop().await;
}

#[tokio::test]
async fn credentials_from_a_secret_not_labelled_for_the_registry_are_never_sent() {
    let tier = Tier::start().await;
    let registry = HostileRegistry::start().await;
    let secrets: Api<Secret> =
        Api::namespaced(tier.cluster.client.clone(), &tier.cluster.namespace);
    // Some other team's Secret in the namespace, named by a ForecastModel author.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "database-token"},
        "stringData": {"token": "db-s3cret"},
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let mut s = spec(&registry.uri, json!({"name": "m", "alias": "champion"}));
    s["registry"]["credentialsSecret"] = json!("database-token");
    tier.apply_and_reconcile("thief", s)
        .await
        .expect("reconcile");
    assert_eq!(
        tier.condition("thief", "Degraded").await,
        is("True", reasons::REGISTRY_CREDENTIALS)
    );
    let message = tier.degraded_message("thief").await;
    assert!(
        message.contains("lacks the label forecast.dev/secret-type=registry-credentials"),
        "{message}"
    );
    assert!(
        registry.requests().is_empty(),
        "the registry was called: {:?}",
        registry.requests()
    );
    // The pods it deploys get no credentials from that Secret either.
    let deployment = tier
        .deployments()
        .get("thief-predictor")
        .await
        .expect("deployment");
    let env = serde_json::to_string(&deployment.spec.template).expect("template");
    assert!(!env.contains("database-token"), "{env}");
    tier.cluster.stop().await;
}

#[tokio::test]
async fn an_existing_deployment_it_does_not_own_is_left_untouched() {
    let tier = Tier::start().await;
    let name = unique_name("tier-conflict");
    train_and_register(&name, 1, &["--alias", "champion"]).expect("v1");
    // Another team's Deployment that happens to have the name the operator would use.
    let theirs: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "conflict-predictor"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "theirs"}},
                 "template": {"metadata": {"labels": {"app": "theirs"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
    }))
    .expect("deployment");
    let created = tier
        .deployments()
        .create(&PostParams::default(), &theirs)
        .await
        .expect("create theirs");
    tier.apply_and_reconcile(
        "conflict",
        spec(&tracking_uri(), json!({"name": name, "alias": "champion"})),
    )
    .await
    .expect("reconcile");
    assert_eq!(
        tier.condition("conflict", "Degraded").await,
        is("True", reasons::OWNERSHIP_CONFLICT)
    );
    assert_eq!(
        tier.condition("conflict", "Ready").await,
        is("False", reasons::OWNERSHIP_CONFLICT)
    );
    assert_eq!(tier.cluster.events(reasons::OWNERSHIP_CONFLICT).await, 1);
    tier.cluster
        .capture_fixture("conflict", "ownership-conflict")
        .await;
    let after = tier
        .deployments()
        .get("conflict-predictor")
        .await
        .expect("still there");
    // Its spec is as its owners left it (its status moves on: the cluster runs it).
    assert_eq!(after.metadata.generation, created.metadata.generation);
    assert_eq!(after.spec, created.spec);
    let managers: Vec<String> = after
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        !managers.iter().any(|m| m == "forecast-operator"),
        "{managers:?}"
    );
    assert!(after.metadata.owner_references.is_none());
    tier.cluster.stop().await;
}

#[tokio::test]
async fn tracking_uris_and_images_outside_the_operator_policy_are_invalid_and_never_called() {
    let registry = HostileRegistry::start().await;
    let policy = operator::policy::SpecPolicy::new(
        &[tracking_uri()],
        &["ghcr.io/forecast-operator/".to_owned()],
    )
    .expect("policy");
    let tier = Tier::start_with(policy).await;
    let with_user_info = registry.uri.replace("http://", "http://user:pw@");
    let cases = [
        (
            "elsewhere",
            registry.uri.clone(),
            None,
            "ALLOWED_TRACKING_URIS",
        ),
        ("userinfo", with_user_info, None, "must not carry user-info"),
        (
            "query",
            format!("{}/?token=x", tracking_uri()),
            None,
            "must not have a query",
        ),
        (
            "image",
            tracking_uri(),
            Some("docker.io/someone/miner:1"),
            "ALLOWED_PREDICTOR_IMAGES",
        ),
        (
            "override",
            tracking_uri(),
            None,
            "MLFLOW_TRACKING_URI is set by the operator",
        ),
    ];
    for (name, uri, image, says) in cases {
        let mut s = spec(&uri, json!({"name": "m", "alias": "champion"}));
        if let Some(image) = image {
            s["predictor"]["image"] = json!(image);
        }
        if name == "override" {
            s["predictor"]["env"] = json!([{"name": "MLFLOW_TRACKING_URI", "value": registry.uri}]);
        }
        let action = tier.apply_and_reconcile(name, s).await.expect("reconcile");
        assert_eq!(action, Action::await_change(), "{name}");
        assert_eq!(
            tier.condition(name, "Degraded").await,
            is("True", reasons::INVALID_SPEC),
            "{name}"
        );
        let message = tier.degraded_message(name).await;
        assert!(message.contains(says), "{name}: {message}");
        assert!(
            tier.deployments()
                .get_opt(&format!("{name}-predictor"))
                .await
                .expect("get")
                .is_none(),
            "{name}: a Deployment was created"
        );
    }
    assert!(
        registry.requests().is_empty(),
        "a registry outside the policy was called: {:?}",
        registry.requests()
    );
    // Inside the policy the same spec is served as usual.
    let model = unique_name("policy");
    train_and_register(&model, 1, &["--alias", "champion"]).expect("register");
    tier.apply_and_reconcile(
        "inside",
        spec(&tracking_uri(), json!({"name": model, "alias": "champion"})),
    )
    .await
    .expect("reconcile");
    assert_eq!(
        tier.condition("inside", "RegistryReachable").await,
        is("True", reasons::REACHABLE)
    );
    tier.cluster.stop().await;
}

#[tokio::test]
async fn a_pod_that_copies_the_predictor_labels_is_never_called() {
    use k8s_openapi::api::core::v1::Pod;
    let tier = Tier::start().await;
    // The impostor's server: records whatever the operator would send it.
    let impostor = HostileRegistry::start().await;
    let port: i32 = impostor
        .uri
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let model = unique_name("impostor");
    train_and_register(&model, 1, &["--alias", "champion"]).expect("register");
    let mut s = spec(&tracking_uri(), json!({"name": model, "alias": "champion"}));
    s["predictor"]["port"] = json!(port);
    tier.apply_and_reconcile("victim", s)
        .await
        .expect("reconcile");
    let pods: Api<Pod> = Api::namespaced(tier.cluster.client.clone(), &tier.cluster.namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "impostor", "labels": {
            "app.kubernetes.io/name": "forecast-predictor",
            "app.kubernetes.io/instance": "victim",
            "app.kubernetes.io/managed-by": "forecast-operator",
        }},
        "spec": {"containers": [{"name": "predictor", "image": "evil"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    // A second one also claims the predictor Deployment as its controller (no Deployment
    // controller makes such a pod: the real one makes ReplicaSets, and so does kube-sim).
    let fm = tier.cluster.fms().get("victim").await.expect("fm");
    let deployment_name = operator::resources::names(&fm).deployment;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(tier.cluster.client.clone(), &tier.cluster.namespace);
    let deployment = deployments.get(&deployment_name).await.expect("deployment");
    let mut forged = pod.clone();
    forged.metadata.name = Some("forged-owner".into());
    forged.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: deployment_name.clone(),
            uid: deployment.metadata.uid.clone().expect("uid"),
            controller: Some(true),
            ..Default::default()
        },
    ]);
    pods.create(&PostParams::default(), &forged)
        .await
        .expect("create the forged pod");
    let status = json!({"status": {"phase": "Running", "podIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": "True"}]}});
    for name in ["impostor", "forged-owner"] {
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("pod status");
    }
    wait_until(
        "the operator's pod cache shows both ready impostors",
        Duration::from_secs(30),
        || async {
            let listed = tier.ctx.caches.pods_of(&fm).await.expect("pods");
            ["impostor", "forged-owner"].iter().all(|name| {
                listed
                    .iter()
                    .any(|p| p.name_any() == *name && operator::reconcile::observe::pod_ready(p))
            })
        },
    )
    .await;
    let own: Vec<String> = operator::reconcile::observe::own_pods(&tier.ctx, &fm)
        .await
        .expect("own pods")
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert!(
        !own.iter().any(|n| n == "impostor" || n == "forged-owner"),
        "the operator takes an impostor for its own pod: {own:?}"
    );
    tier.reconcile("victim").await.expect("reconcile");
    tier.reconcile("victim").await.expect("reconcile");
    assert!(
        impostor.requests().is_empty(),
        "the impostor was called: {:?}",
        impostor.requests()
    );
    let status = tier.cluster.status("victim").await;
    assert!(
        !status.to_string().contains("impostor") && !status.to_string().contains("forged-owner"),
        "an impostor shows in the status: {status}"
    );
    tier.cluster.stop().await;
}

#[tokio::test]
async fn spec_env_reads_only_secrets_and_config_maps_labelled_for_the_predictor() {
    let tier = Tier::start().await;
    let ns = tier.cluster.namespace.clone();
    let secrets: Api<Secret> = Api::namespaced(tier.cluster.client.clone(), &ns);
    // Another team's database password, in the same namespace.
    let db: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db-password"}, "stringData": {"password": "hunter2"}
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &db)
        .await
        .expect("create secret");
    let model = unique_name("env-ref");
    train_and_register(&model, 1, &["--alias", "champion"]).expect("register");
    let mut s = spec(&tracking_uri(), json!({"name": model, "alias": "champion"}));
    s["predictor"]["env"] = json!([{"name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "db-password", "key": "password"}}}]);
    let action = tier
        .apply_and_reconcile("deputy", s.clone())
        .await
        .expect("reconcile");
    assert_ne!(
        action,
        Action::await_change(),
        "a label can come later: polled"
    );
    assert_eq!(
        tier.condition("deputy", "Degraded").await,
        is("True", reasons::INVALID_SPEC)
    );
    let message = tier.degraded_message("deputy").await;
    assert!(
        message.contains(
            "spec.predictor.env[DB_PASSWORD]: Secret db-password lacks the label forecast.dev/predictor-env=true"
        ),
        "{message}"
    );
    let deployment_name = format!("{}-predictor", "deputy");
    let uses_the_secret = |d: Option<Deployment>| {
        serde_json::to_string(&d)
            .unwrap_or_default()
            .contains("db-password")
    };
    assert!(
        !uses_the_secret(
            tier.deployments()
                .get_opt(&deployment_name)
                .await
                .expect("get")
        ),
        "the Secret reached a Deployment"
    );
    // A proxy variable is reserved like the operator's own names.
    let mut proxied = spec(&tracking_uri(), json!({"name": model, "alias": "champion"}));
    proxied["predictor"]["env"] = json!([{"name": "HTTPS_PROXY", "value": "http://attacker:3128"}]);
    tier.apply_and_reconcile("proxied", proxied)
        .await
        .expect("reconcile");
    assert!(
        tier.degraded_message("proxied")
            .await
            .contains("HTTPS_PROXY is set by the operator"),
        "{}",
        tier.degraded_message("proxied").await
    );

    // Its owner labels it for the predictor: the same spec is served.
    secrets
        .patch(
            "db-password",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"forecast.dev/predictor-env": "true"}}})),
        )
        .await
        .expect("label");
    tier.reconcile("deputy").await.expect("reconcile");
    assert_ne!(
        tier.condition("deputy", "Degraded").await.1,
        reasons::INVALID_SPEC
    );
    assert!(
        uses_the_secret(
            tier.deployments()
                .get_opt(&deployment_name)
                .await
                .expect("get")
        ),
        "the labelled Secret is not in the Deployment"
    );
    tier.cluster.stop().await;
}

/// The API server on a runtime of its own (kube-sim runs in-process otherwise): the test's
/// runtime can then be blocked without blocking the server. Its kubeconfig and namespace.
fn cluster_on_its_own_thread() -> (std::path::PathBuf, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let cluster = TestCluster::start_bare().await;
            tx.send((cluster.kubeconfig.clone(), cluster.namespace.clone()))
                .expect("send");
            // Serves until the test process ends.
            futures::future::pending::<()>().await;
            drop(cluster);
        });
    });
    rx.recv().expect("the cluster started")
}

#[test]
fn lease_renewals_go_on_while_the_operators_runtime_is_blocked() {
    use operator::leader::{LeaderElector, LeaseConfig};
    use operator::renewal::Renewal;
    let (kubeconfig, namespace) = cluster_on_its_own_thread();
    // The operator's runtime: one thread, which the test blocks as a flood of reconciles
    // would keep it busy.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("config");
        let lease = LeaseConfig {
            name: unique_name("renewal"),
            namespace: namespace.clone(),
            identity: "busy-operator".into(),
            duration: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(2),
            webhook_address: None,
        };
        let client = kube::Client::try_from(config.clone()).expect("client");
        LeaderElector::new(client.clone(), lease.clone())
            .acquire()
            .await;
        let renewal = Renewal::start(config, lease.clone()).expect("renewal thread");
        // Blocked for more than twice the renew deadline: renewals on this runtime could
        // not happen, and the lease would be lost.
        let blocked_at = k8s_openapi::jiff::Timestamp::now();
        std::thread::sleep(Duration::from_secs(5));
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(client, &namespace);
        let spec = leases
            .get(&lease.name)
            .await
            .expect("lease")
            .spec
            .expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("busy-operator"));
        let renewed = spec.renew_time.expect("renewTime").0;
        assert!(
            renewed > blocked_at + k8s_openapi::jiff::SignedDuration::from_secs(2),
            "last renewal {renewed}, the runtime was blocked from {blocked_at} for 5 s"
        );
        renewal.stop().await;
    });
}
