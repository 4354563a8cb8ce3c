//! The predictor pods by ForecastModel (namespace and instance label), kept from the pod
//! watch's events beside the pod cache, so a reconcile finds its own pods without looking
//! at every pod in the cache (with 10,000 ForecastModels that look was most of a steady
//! reconcile's work).

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::watcher::Event;

use crate::resources::INSTANCE_LABEL;

/// The `app.kubernetes.io/name` of every predictor pod.
pub const PREDICTOR_APP: &str = "forecast-predictor";

/// `(namespace, name)`.
type Key = (String, String);

#[derive(Debug, Default)]
pub struct PodIndex(Mutex<Index>);

#[derive(Debug, Default)]
struct Index {
    live: Entries,
    /// Filled while the watch lists again; replaces `live` when the list is done (a pod
    /// deleted while the watch was down is not in it).
    relisting: Option<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// `(namespace, instance)` → the names of the pods labelled for it, sorted (a
    /// ForecastModel has a few pods: a `Vec` is a fraction of a `BTreeSet`'s memory).
    by_owner: HashMap<Key, Vec<String>>,
    /// `(namespace, pod name)` → its instance label, to move a relabelled pod.
    owner_of: HashMap<Key, String>,
}

/// The ForecastModel a pod is labelled for, when it is labelled as a predictor.
pub fn instance_of(pod: &Pod) -> Option<&String> {
    let labels = pod.labels();
    (labels.get("app.kubernetes.io/name").map(String::as_str) == Some(PREDICTOR_APP))
        .then(|| labels.get(INSTANCE_LABEL))
        .flatten()
}

impl Entries {
    fn apply(&mut self, pod: &Pod) {
        let Some(ns) = pod.namespace() else {
            return;
        };
        let name = pod.name_any();
        self.remove(&ns, &name);
        if let Some(instance) = instance_of(pod) {
            let names = self
                .by_owner
                .entry((ns.clone(), instance.clone()))
                .or_default();
            if let Err(at) = names.binary_search(&name) {
                names.insert(at, name.clone());
            }
            self.owner_of.insert((ns, name), instance.clone());
        }
    }

    fn remove(&mut self, ns: &str, name: &str) {
        let Some(instance) = self.owner_of.remove(&(ns.to_owned(), name.to_owned())) else {
            return;
        };
        let key = (ns.to_owned(), instance);
        if let Some(names) = self.by_owner.get_mut(&key) {
            names.retain(|n| n != name);
            if names.is_empty() {
                self.by_owner.remove(&key);
            }
        }
    }
}

impl PodIndex {
    /// Follows one event of the pod watch (as the reflector store does).
    pub fn observe(&self, event: &Event<Pod>) {
        let mut index = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Apply(pod) => index.live.apply(pod),
            Event::Delete(pod) => {
                if let Some(ns) = pod.namespace() {
                    index.live.remove(&ns, &pod.name_any());
                }
            }
            Event::Init => index.relisting = Some(Entries::default()),
            Event::InitApply(pod) => {
                if let Some(relisting) = index.relisting.as_mut() {
                    relisting.apply(pod);
                }
            }
            Event::InitDone => {
                if let Some(relisting) = index.relisting.take() {
                    index.live = relisting;
                }
            }
        }
    }

    /// The names of the pods in `ns` labelled for the ForecastModel `instance`.
    pub fn names(&self, ns: &str, instance: &str) -> Vec<String> {
        let index = self.0.lock().unwrap_or_else(|p| p.into_inner());
        index
            .live
            .by_owner
            .get(&(ns.to_owned(), instance.to_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, instance: &str, app: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns",
            "labels": {"app.kubernetes.io/name": app, INSTANCE_LABEL: instance}}}))
        .expect("pod")
    }

    #[test]
    fn pods_are_found_by_their_forecast_model_and_follow_relabels_and_deletes() {
        let index = PodIndex::default();
        index.observe(&Event::Apply(pod("a-1", "a", PREDICTOR_APP)));
        index.observe(&Event::Apply(pod("a-2", "a", PREDICTOR_APP)));
        index.observe(&Event::Apply(pod("b-1", "b", PREDICTOR_APP)));
        index.observe(&Event::Apply(pod("other", "a", "something-else")));
        assert_eq!(index.names("ns", "a"), ["a-1", "a-2"]);
        assert_eq!(index.names("other-ns", "a"), Vec::<String>::new());
        // Relabelled to b: gone from a.
        index.observe(&Event::Apply(pod("a-2", "b", PREDICTOR_APP)));
        assert_eq!(index.names("ns", "a"), ["a-1"]);
        assert_eq!(index.names("ns", "b"), ["a-2", "b-1"]);
        index.observe(&Event::Delete(pod("b-1", "b", PREDICTOR_APP)));
        assert_eq!(index.names("ns", "b"), ["a-2"]);
        // No longer a predictor.
        index.observe(&Event::Apply(pod("a-1", "a", "something-else")));
        assert_eq!(index.names("ns", "a"), Vec::<String>::new());
    }

    #[test]
    fn a_relist_replaces_the_index_once_done() {
        let index = PodIndex::default();
        index.observe(&Event::Apply(pod("a-1", "a", PREDICTOR_APP)));
        index.observe(&Event::Apply(pod("a-2", "a", PREDICTOR_APP)));
        index.observe(&Event::Init);
        index.observe(&Event::InitApply(pod("a-2", "a", PREDICTOR_APP)));
        // Until the list is done the old index answers.
        assert_eq!(index.names("ns", "a"), ["a-1", "a-2"]);
        index.observe(&Event::InitDone);
        // a-1 was deleted while the watch was down.
        assert_eq!(index.names("ns", "a"), ["a-2"]);
    }
}
