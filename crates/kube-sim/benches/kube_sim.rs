//! `cargo bench -p kube-sim`: start-up time, and 1,000 custom objects created and seen by
//! a watch. Prints medians over several runs.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams, WatchEvent, WatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn create_and_watch(n: usize) -> Duration {
    let sim = kube_sim::start(kube_sim::SimConfig::default())
        .await
        .expect("start");
    let client =
        kube::Client::try_from(kube::Config::new(sim.url.parse().expect("url"))).expect("client");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "items.bench.dev"},
        "spec": {"group": "bench.dev", "scope": "Namespaced",
            "names": {"plural": "items", "singular": "item", "kind": "Item"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"n": {"type": "integer"}}}}}}}]}
    }))
    .expect("crd");
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("crd create");
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("bench.dev", "v1", "Item"),
        "items",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let started = Instant::now();
    let mut stream = api
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    let watcher = tokio::spawn(async move {
        let mut seen = 0;
        while let Some(Ok(e)) = stream.next().await {
            if matches!(e, WatchEvent::Added(_)) {
                seen += 1;
                if seen == n {
                    break;
                }
            }
        }
        Instant::now()
    });
    let mut creates = Vec::new();
    for chunk in 0..8 {
        let (api, ar) = (api.clone(), ar.clone());
        creates.push(tokio::spawn(async move {
            for i in (chunk..n).step_by(8) {
                let mut o = DynamicObject::new(&format!("item-{i}"), &ar);
                o.data = json!({"spec": {"n": i}});
                api.create(&PostParams::default(), &o)
                    .await
                    .expect("create");
            }
        }));
    }
    for c in creates {
        c.await.expect("creator");
    }
    let seen_all = watcher.await.expect("watcher");
    let elapsed = seen_all - started;
    sim.stop().await;
    elapsed
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut starts = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let sim = kube_sim::start(kube_sim::SimConfig::default()).await.expect("start");
            starts.push(t.elapsed());
            sim.stop().await;
        }
        println!("kube-sim start (until serving, kubeconfig written): median {:?} over 20", median(starts));
        let mut runs = Vec::new();
        for _ in 0..5 {
            runs.push(create_and_watch(1000).await);
        }
        println!("1000 custom objects created (8 concurrent clients) and all seen by a watch: median {:?} over 5", median(runs));
    });
}
