//! The object store: every object as JSON, a cluster-wide resourceVersion, the event
//! history that watches resume from, and the write semantics of the API server
//! (metadata, generation, status subresource, finalizers, no-op writes, CRD admission).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::managed_fields::{self, Writer};
use crate::resources::{ResourceType, TypeKey, builtin_types, types_from_crd};
use crate::schema;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub revision: u64,
    pub resource: TypeKey,
    pub kind: EventKind,
    pub object: Value,
    /// The object before the change (for selector transitions).
    pub old: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
}

/// Who writes and how (from the request's query parameters).
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub manager: String,
    pub dry_run: bool,
    pub force: bool,
    /// Give the writer ownership of the fields it changes (client updates and patches;
    /// not the simulator's own controllers, nor apply, which records its own).
    pub record_fields: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            manager: "kube-sim".into(),
            dry_run: false,
            force: false,
            record_fields: false,
        }
    }
}

/// An object with owners: its type, namespace, name and owner uids.
pub type OwnedObject = (TypeKey, String, String, Vec<String>);

/// `ObjectKey`: (namespace, name); cluster-scoped objects have an empty namespace.
pub type ObjectKey = (String, String);

pub struct ListResult {
    pub items: Vec<Value>,
    pub revision: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

pub struct Store {
    types: Vec<ResourceType>,
    objects: HashMap<TypeKey, BTreeMap<ObjectKey, Value>>,
    revision: u64,
    history: VecDeque<Arc<WatchEvent>>,
    history_limit: usize,
    events: broadcast::Sender<Arc<WatchEvent>>,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta_str<'a>(o: &'a Value, field: &str) -> &'a str {
    o["metadata"][field].as_str().unwrap_or_default()
}

fn random_suffix(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Whether two objects differ outside `metadata` (and `status`, when status is a
/// subresource): what a change of `generation` is about. Compares in place.
fn spec_differs(a: &Value, b: &Value, rt: &ResourceType) -> bool {
    let skip = |k: &str| k == "metadata" || (rt.status_subresource && k == "status");
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a != b;
    };
    let a_keys = a.keys().filter(|k| !skip(k));
    let b_count = b.keys().filter(|k| !skip(k)).count();
    let mut a_count = 0;
    for k in a_keys {
        a_count += 1;
        if b.get(k) != a.get(k) {
            return true;
        }
    }
    a_count != b_count
}

/// managedFields entries without their `time`, for comparison.
fn strip_time(v: Option<&Value>) -> Vec<Vec<(&String, &Value)>> {
    v.and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    e.as_object()
                        .map(|o| o.iter().filter(|(k, _)| k.as_str() != "time").collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Objects equal but for what a no-op write changes anyway (resourceVersion, the times
/// in managedFields). Compares in place: this runs on every write.
fn same_content(a: &Value, b: &Value) -> bool {
    let (Some(ao), Some(bo)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    if ao.len() != bo.len() {
        return false;
    }
    for (k, av) in ao {
        let Some(bv) = bo.get(k) else { return false };
        if k != "metadata" {
            if av != bv {
                return false;
            }
            continue;
        }
        let (Some(am), Some(bm)) = (av.as_object(), bv.as_object()) else {
            return av == bv;
        };
        let keys: std::collections::BTreeSet<&String> = am
            .keys()
            .chain(bm.keys())
            .filter(|k| k.as_str() != "resourceVersion")
            .collect();
        for mk in keys {
            let (x, y) = (am.get(mk), bm.get(mk));
            if mk == "managedFields" {
                if strip_time(x) != strip_time(y) {
                    return false;
                }
            } else if x != y {
                return false;
            }
        }
    }
    true
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (events, _) = broadcast::channel(65_536);
        let mut store = Store {
            types: builtin_types(),
            objects: HashMap::new(),
            revision: 1,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            events,
        };
        let ns = store.resolve("", "v1", "namespaces").cloned();
        if let Some(ns) = ns {
            for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let _ = store.create(
                    &ns,
                    "",
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
                    &WriteOptions::default(),
                );
            }
        }
        store
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    pub fn type_for_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.events.subscribe()
    }

    fn bucket(&self, rt: &ResourceType) -> Option<&BTreeMap<ObjectKey, Value>> {
        self.objects.get(&rt.key())
    }

    fn scope_namespace(rt: &ResourceType, ns: &str) -> String {
        if rt.namespaced {
            ns.to_owned()
        } else {
            String::new()
        }
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Value> {
        let key = (Self::scope_namespace(rt, ns), name.to_owned());
        self.bucket(rt)
            .and_then(|b| b.get(&key))
            .map(|o| self.with_type(rt, o))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Objects carry the apiVersion of the version they are read through.
    fn with_type(&self, rt: &ResourceType, o: &Value) -> Value {
        let mut o = o.clone();
        if let Some(m) = o.as_object_mut() {
            m.insert("apiVersion".into(), json!(rt.api_version()));
            m.insert("kind".into(), json!(rt.kind));
        }
        o
    }

    /// The objects of a type that `keep` accepts, cloned only when accepted.
    pub fn select(&self, rt: &ResourceType, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.bucket(rt)
            .map(|b| {
                b.values()
                    .filter(|o| keep(o))
                    .map(|o| self.with_type(rt, o))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The uids of a type's objects (without cloning them).
    pub fn uids(&self, rt: &ResourceType) -> std::collections::HashSet<String> {
        self.bucket(rt)
            .map(|b| {
                b.values()
                    .filter_map(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// For garbage collection, without cloning objects: every uid, and for each object
    /// with owners that is not already being deleted, its type, namespace, name and owner
    /// uids.
    pub fn ownership(&self) -> (std::collections::HashSet<String>, Vec<OwnedObject>) {
        let mut uids = std::collections::HashSet::new();
        let mut owned = Vec::new();
        for (tk, bucket) in &self.objects {
            for ((ns, name), o) in bucket {
                if let Some(uid) = o["metadata"]["uid"].as_str() {
                    uids.insert(uid.to_owned());
                }
                if !o["metadata"]["deletionTimestamp"].is_null() {
                    continue;
                }
                if let Some(refs) = o["metadata"]["ownerReferences"]
                    .as_array()
                    .filter(|r| !r.is_empty())
                {
                    let owners = refs
                        .iter()
                        .filter_map(|r| r["uid"].as_str().map(str::to_owned))
                        .collect();
                    owned.push((tk.clone(), ns.clone(), name.clone(), owners));
                }
            }
        }
        (uids, owned)
    }

    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> ApiResult<ListResult> {
        let start_after = match continue_token.filter(|t| !t.is_empty()) {
            Some(t) => {
                let (rev, ns, name) = decode_continue(t)?;
                if rev < self.oldest_revision() {
                    return Err(ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list \
                         result. You can start a new list without the continue parameter.",
                    ));
                }
                Some((ns, name))
            }
            None => None,
        };
        let ns = ns.filter(|n| !n.is_empty() && rt.namespaced);
        let matching: Vec<&Value> = self
            .bucket(rt)
            .map(|b| {
                b.iter()
                    .filter(|((ons, _), _)| ns.is_none_or(|n| n == ons))
                    .filter(|(k, _)| start_after.as_ref().is_none_or(|s| *k > s))
                    .map(|(_, o)| o)
                    .filter(|o| labels.matches(o) && fields.matches(o))
                    .collect()
            })
            .unwrap_or_default();
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let take = matching.len().min(limit);
        let items: Vec<Value> = matching[..take]
            .iter()
            .map(|o| self.with_type(rt, o))
            .collect();
        let (continue_token, remaining) = if take < matching.len() {
            let last = &matching[take - 1];
            (
                Some(encode_continue(
                    self.revision,
                    meta_str(last, "namespace"),
                    meta_str(last, "name"),
                )),
                Some(matching.len() - take),
            )
        } else {
            (None, None)
        };
        Ok(ListResult {
            items,
            revision: self.revision,
            continue_token,
            remaining,
        })
    }

    pub fn oldest_revision(&self) -> u64 {
        self.history
            .front()
            .map(|e| e.revision)
            .unwrap_or(self.revision)
    }

    /// Events a watch from `revision` must replay, or 410 when they are no longer kept.
    pub fn events_since(
        &self,
        rt: &ResourceType,
        revision: u64,
    ) -> ApiResult<Vec<Arc<WatchEvent>>> {
        if revision < self.revision && revision + 1 < self.oldest_revision() {
            return Err(ApiError::gone(format!(
                "too old resource version: {revision} ({})",
                self.oldest_revision()
            )));
        }
        let key = rt.key();
        Ok(self
            .history
            .iter()
            .filter(|e| e.revision > revision && e.resource == key)
            .cloned()
            .collect())
    }

    fn emit(&mut self, rt: &ResourceType, kind: EventKind, object: Value, old: Option<Value>) {
        let event = Arc::new(WatchEvent {
            revision: self.revision,
            resource: rt.key(),
            kind,
            object: self.with_type(rt, &object),
            old: old.map(|o| self.with_type(rt, &o)),
        });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            self.history.pop_front();
        }
        let _ = self.events.send(event);
    }

    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    /// Gives `object` the next resourceVersion, stores it (removes it for `Deleted`), and
    /// emits the watch event; returns the object as committed.
    fn commit(
        &mut self,
        rt: &ResourceType,
        key: ObjectKey,
        kind: EventKind,
        mut object: Value,
        old: Option<Value>,
    ) -> Value {
        let rev = self.next_revision();
        object["metadata"]["resourceVersion"] = json!(rev.to_string());
        let bucket = self.objects.entry(rt.key()).or_default();
        if kind == EventKind::Deleted {
            bucket.remove(&key);
        } else {
            bucket.insert(key, object.clone());
        }
        self.emit(rt, kind, object.clone(), old);
        object
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects
            .get(&(String::new(), "namespaces".to_owned()))
            .is_some_and(|b| b.contains_key(&(String::new(), ns.to_owned())))
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut object: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let ns = Self::scope_namespace(rt, ns);
        let body_ns = meta_str(&object, "namespace").to_owned();
        if rt.namespaced {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if ns.is_empty() {
                return Err(ApiError::bad_request(
                    "a namespace is required for a namespaced resource",
                ));
            }
            if !self.namespace_exists(&ns) {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    format!("namespaces \"{ns}\" not found"),
                ));
            }
        }
        if object.get("metadata").is_none_or(|m| !m.is_object()) {
            object["metadata"] = json!({});
        }
        let mut name = meta_str(&object, "name").to_owned();
        if name.is_empty() {
            let prefix = meta_str(&object, "generateName").to_owned();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    vec![(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
            name = format!("{prefix}{}", random_suffix(5));
        }
        let key = (ns.clone(), name.clone());
        if self.bucket(rt).is_some_and(|b| b.contains_key(&key)) {
            return Err(ApiError::already_exists(rt, &name));
        }
        {
            let meta = object["metadata"]
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
            meta.insert("name".into(), json!(name));
            if rt.namespaced {
                meta.insert("namespace".into(), json!(ns));
            } else {
                meta.remove("namespace");
            }
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
            meta.remove("deletionTimestamp");
            meta.remove("resourceVersion");
            if rt.status_subresource || rt.crd.is_some() {
                meta.insert("generation".into(), json!(1));
            }
        }
        if rt.status_subresource
            && rt.crd.is_some()
            && let Some(m) = object.as_object_mut()
        {
            m.remove("status");
        }
        self.prepare_builtin(rt, &mut object);
        self.admit(rt, &name, &mut object)?;
        if rt.key() == (String::new(), "namespaces".into()) {
            object["status"] = json!({"phase": "Active"});
        }
        let now = now_rfc3339();
        if opts.manager != "kube-sim" && object["metadata"].get("managedFields").is_none() {
            let writer = Writer {
                manager: &opts.manager,
                api_version: &rt.api_version(),
                subresource: "",
                now: &now,
            };
            managed_fields::record_update(None, &mut object, &writer);
            // A create is recorded as Update by the real server too.
        }
        if opts.dry_run {
            return Ok(self.with_type(rt, &object));
        }
        let object = self.commit(rt, key, EventKind::Added, object, None);
        self.mirror_event(rt, &object);
        if rt.key()
            == (
                "apiextensions.k8s.io".to_owned(),
                "customresourcedefinitions".to_owned(),
            )
        {
            self.crd_changed(&object);
        }
        Ok(self.with_type(rt, &object))
    }

    /// Defaults the real API server fills for built-ins the simulator's clients rely on.
    fn prepare_builtin(&mut self, rt: &ResourceType, object: &mut Value) {
        match (rt.group.as_str(), rt.kind.as_str()) {
            ("apps", "Deployment" | "ReplicaSet") if object["spec"]["replicas"].is_null() => {
                object["spec"]["replicas"] = json!(1);
            }
            ("", "Service") => {
                if object["spec"]["type"].is_null() {
                    object["spec"]["type"] = json!("ClusterIP");
                }
                if object["spec"]["clusterIP"].is_null() {
                    let n = self.revision;
                    object["spec"]["clusterIP"] =
                        json!(format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1));
                }
                if let Some(ports) = object["spec"]["ports"].as_array_mut() {
                    for p in ports {
                        if p["protocol"].is_null() {
                            p["protocol"] = json!("TCP");
                        }
                        if p["targetPort"].is_null() {
                            p["targetPort"] = p["port"].clone();
                        }
                    }
                }
            }
            ("", "Secret") => secret_string_data(object),
            ("", "Pod") if object["status"]["phase"].is_null() => {
                object["status"] = json!({"phase": "Pending"});
            }
            _ => {}
        }
    }

    /// CRD objects and custom resources are checked the way the API server checks them.
    fn admit(&self, rt: &ResourceType, name: &str, object: &mut Value) -> ApiResult<()> {
        if rt.key()
            == (
                "apiextensions.k8s.io".to_owned(),
                "customresourcedefinitions".to_owned(),
            )
        {
            return types_from_crd(object).map(|_| ()).map_err(|m| {
                let (f, msg) = m
                    .split_once(": ")
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .unwrap_or(("spec".into(), m));
                ApiError::invalid(rt, name, vec![(f, msg)])
            });
        }
        if let Some(s) = &rt.schema {
            let causes = schema::admit(s, object);
            if !causes.is_empty() {
                return Err(ApiError::invalid(rt, name, causes));
            }
        }
        Ok(())
    }

    /// Stores a new version of an existing object (update, patch, apply), applying the
    /// server's rules. `new` is the complete intended object.
    pub fn write(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut new: Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let ns = Self::scope_namespace(rt, ns);
        let key = (ns.clone(), name.to_owned());
        let old = self
            .bucket(rt)
            .and_then(|b| b.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if new.get("metadata").is_none_or(|m| !m.is_object()) {
            new["metadata"] = json!({});
        }
        let given_name = meta_str(&new, "name");
        if !given_name.is_empty() && given_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given_name}) does not match the name on the URL ({name})"
            )));
        }
        let given_rv = meta_str(&new, "resourceVersion");
        if !given_rv.is_empty() && given_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(rt, name));
        }
        // What the subresource may change.
        match sub {
            Subresource::Main => {
                if rt.status_subresource {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
            }
            Subresource::Status => {
                let status = new.get("status").cloned();
                let managed = new["metadata"].get("managedFields").cloned();
                new = old.clone();
                match status {
                    Some(s) => new["status"] = s,
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                if let Some(mf) = managed {
                    new["metadata"]["managedFields"] = mf;
                }
            }
        }
        // Identity and server-owned metadata come from the stored object.
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            match old["metadata"].get(f) {
                Some(v) => new["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        if let Some(m) = new.as_object_mut() {
            m.insert("apiVersion".into(), old["apiVersion"].clone());
            m.insert("kind".into(), old["kind"].clone());
        }
        if sub == Subresource::Main {
            if rt.key() == (String::new(), "secrets".to_owned()) {
                secret_string_data(&mut new);
            }
            self.admit(rt, name, &mut new)?;
        }
        if opts.record_fields {
            let now = now_rfc3339();
            let subresource = if sub == Subresource::Status {
                "status"
            } else {
                ""
            };
            let writer = Writer {
                manager: &opts.manager,
                api_version: &rt.api_version(),
                subresource,
                now: &now,
            };
            managed_fields::record_update(Some(&old), &mut new, &writer);
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if same_content(&old, &new) {
            return Ok(self.with_type(rt, &old));
        }
        if (rt.status_subresource || rt.crd.is_some()) && spec_differs(&old, &new, rt) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if opts.dry_run {
            return Ok(self.with_type(rt, &new));
        }
        // An object being deleted goes once its last finalizer is removed.
        let terminating = !new["metadata"]["deletionTimestamp"].is_null();
        let no_finalizers = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        if terminating && no_finalizers {
            let new = self.commit(rt, key, EventKind::Deleted, new, Some(old));
            self.after_delete(rt, &new);
            return Ok(self.with_type(rt, &new));
        }
        let new = self.commit(rt, key, EventKind::Modified, new, Some(old));
        self.mirror_event(rt, &new);
        if rt.key()
            == (
                "apiextensions.k8s.io".to_owned(),
                "customresourcedefinitions".to_owned(),
            )
            && sub == Subresource::Main
        {
            self.crd_changed(&new);
        }
        Ok(self.with_type(rt, &new))
    }

    /// Server-side apply (create when absent).
    pub fn apply(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        config: Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        if !config.is_object() {
            return Err(ApiError::bad_request("the apply body must be an object"));
        }
        let config_name = meta_str(&config, "name");
        if config_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({config_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(duplicate) = crate::list_maps::duplicate_key(&config) {
            return Err(ApiError::new(
                500,
                "InternalError",
                format!(
                    "failed to create typed patch object ({ns}/{name}; {}, Kind={}): {duplicate}",
                    rt.api_version(),
                    rt.kind
                ),
            ));
        }
        let now = now_rfc3339();
        let subresource = if sub == Subresource::Status {
            "status"
        } else {
            ""
        };
        let api_version = rt.api_version();
        let writer = Writer {
            manager: &opts.manager,
            api_version: &api_version,
            subresource,
            now: &now,
        };
        let existing = self.get(rt, ns, name).ok();
        match existing {
            None => {
                if sub == Subresource::Status {
                    return Err(ApiError::not_found(rt, name));
                }
                let object = managed_fields::apply(None, &config, &writer, true);
                self.create(rt, ns, object, opts)
            }
            Some(existing) => {
                let conflicts = managed_fields::apply_conflicts(&existing, &config, &writer);
                if !conflicts.is_empty() && !opts.force {
                    let list: Vec<String> = conflicts
                        .iter()
                        .map(|(m, p)| format!("conflict with \"{m}\": {p}"))
                        .collect();
                    let mut e = ApiError::conflict(rt, name, "");
                    e.message = format!(
                        "Apply failed with {} conflict{}: {}",
                        conflicts.len(),
                        if conflicts.len() == 1 { "" } else { "s" },
                        list.join("\n")
                    );
                    e.details = Some(json!({
                        "name": name, "group": rt.group, "kind": rt.plural,
                        "causes": conflicts.iter().map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": p})).collect::<Vec<_>>(),
                    }));
                    return Err(e);
                }
                let mut config = config;
                // The apply configuration must not carry a stale resourceVersion either.
                if let Some(m) = config["metadata"].as_object_mut() {
                    if m.get("resourceVersion")
                        .and_then(Value::as_str)
                        .is_some_and(|rv| rv != meta_str(&existing, "resourceVersion"))
                    {
                        return Err(ApiError::stale(rt, name));
                    }
                    m.remove("resourceVersion");
                }
                let merged = managed_fields::apply(Some(&existing), &config, &writer, opts.force);
                self.write(
                    rt,
                    ns,
                    name,
                    merged,
                    sub,
                    &WriteOptions {
                        record_fields: false,
                        ..opts.clone()
                    },
                )
            }
        }
    }

    /// Deletes an object: with finalizers it is only marked (`deletionTimestamp`).
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let ns = Self::scope_namespace(rt, ns);
        let key = (ns.clone(), name.to_owned());
        let old = self
            .bucket(rt)
            .and_then(|b| b.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if let Some(uid) = &opts.precondition_uid
            && meta_str(&old, "uid") != uid
        {
            return Err(ApiError::conflict(
                rt,
                name,
                "Precondition failed: UID in precondition does not match",
            ));
        }
        if let Some(rv) = &opts.precondition_resource_version
            && meta_str(&old, "resourceVersion") != rv
        {
            return Err(ApiError::stale(rt, name));
        }
        if opts.dry_run {
            return Ok(self.with_type(rt, &old));
        }
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if !old["metadata"]["deletionTimestamp"].is_null() {
                return Ok(self.with_type(rt, &old));
            }
            let mut new = old.clone();
            new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let new = self.commit(rt, key, EventKind::Modified, new, Some(old));
            return Ok(self.with_type(rt, &new));
        }
        let gone = self.commit(rt, key, EventKind::Deleted, old.clone(), Some(old));
        if opts.orphan {
            self.orphan_dependents(meta_str(&gone, "uid"));
        }
        self.after_delete(rt, &gone);
        Ok(self.with_type(rt, &gone))
    }

    /// Removes the ownerReference to `uid` from every object (propagationPolicy=Orphan).
    fn orphan_dependents(&mut self, uid: &str) {
        let mut changes = Vec::new();
        for (tk, bucket) in &self.objects {
            for (k, o) in bucket {
                if o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
                {
                    changes.push((tk.clone(), k.clone()));
                }
            }
        }
        for (tk, k) in changes {
            let Some(rt) = self.types.iter().find(|t| t.key() == tk).cloned() else {
                continue;
            };
            if let Ok(mut o) = self.get(&rt, &k.0, &k.1) {
                if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"] != uid);
                }
                let _ = self.write(
                    &rt,
                    &k.0,
                    &k.1,
                    o,
                    Subresource::Main,
                    &WriteOptions::default(),
                );
            }
        }
    }

    fn after_delete(&mut self, rt: &ResourceType, gone: &Value) {
        if rt.key()
            == (
                "apiextensions.k8s.io".to_owned(),
                "customresourcedefinitions".to_owned(),
            )
        {
            self.crd_removed(meta_str(gone, "name"));
        }
        if rt.key() == (String::new(), "namespaces".to_owned()) {
            let ns = meta_str(gone, "name").to_owned();
            let namespaced: Vec<ResourceType> = self
                .types
                .iter()
                .filter(|t| t.namespaced)
                .cloned()
                .collect();
            let mut seen = std::collections::HashSet::new();
            for t in namespaced {
                if !seen.insert(t.key()) {
                    continue;
                }
                let names: Vec<String> = self
                    .bucket(&t)
                    .map(|b| {
                        b.keys()
                            .filter(|(n, _)| *n == ns)
                            .map(|(_, name)| name.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for name in names {
                    let _ = self.force_remove(&t, &ns, &name);
                }
            }
        }
    }

    /// Removes an object regardless of finalizers (namespace and CRD teardown).
    fn force_remove(&mut self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<()> {
        let key = (Self::scope_namespace(rt, ns), name.to_owned());
        let old = self
            .objects
            .get_mut(&rt.key())
            .and_then(|b| b.remove(&key))
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        self.commit(rt, key, EventKind::Deleted, old.clone(), Some(old));
        Ok(())
    }

    /// `events.k8s.io/v1` and core `v1` Events are one resource in the real API server;
    /// an event written through the former is readable through the latter.
    fn mirror_event(&mut self, rt: &ResourceType, event: &Value) {
        if rt.key() != ("events.k8s.io".to_owned(), "events".to_owned()) {
            return;
        }
        let Some(core) = self.resolve("", "v1", "events").cloned() else {
            return;
        };
        let ns = meta_str(event, "namespace").to_owned();
        let name = meta_str(event, "name").to_owned();
        let time = event["eventTime"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(now_rfc3339);
        let last = event["series"]["lastObservedTime"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| time.clone());
        let mirrored = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": event["regarding"],
            "reason": event["reason"],
            "message": event["note"],
            "type": event["type"],
            "action": event["action"],
            "source": {"component": event["reportingController"]},
            "reportingComponent": event["reportingController"],
            "reportingInstance": event["reportingInstance"],
            "firstTimestamp": time,
            "lastTimestamp": last,
            "eventTime": event["eventTime"],
            "count": event["series"]["count"].as_i64().unwrap_or(1),
        });
        let opts = WriteOptions::default();
        match self.get(&core, &ns, &name) {
            Ok(existing) => {
                let mut updated = mirrored;
                updated["metadata"] = existing["metadata"].clone();
                let _ = self.write(&core, &ns, &name, updated, Subresource::Main, &opts);
            }
            Err(_) => {
                let _ = self.create(&core, &ns, mirrored, &opts);
            }
        }
    }

    /// Registers the CRD's types and marks it Established.
    fn crd_changed(&mut self, crd: &Value) {
        let Ok(new_types) = types_from_crd(crd) else {
            return;
        };
        let name = meta_str(crd, "name").to_owned();
        self.types
            .retain(|t| t.crd.as_deref() != Some(name.as_str()));
        self.types.extend(new_types.iter().cloned());
        let first = &new_types[0];
        let now = now_rfc3339();
        let accepted = json!({
            "kind": first.kind, "listKind": first.list_kind(), "plural": first.plural,
            "singular": first.singular, "shortNames": first.short_names, "categories": first.categories,
        });
        let status = json!({
            "acceptedNames": accepted,
            "storedVersions": [first.version],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
        });
        if crd["status"]["conditions"] == status["conditions"]
            && crd["status"]["acceptedNames"] == accepted
        {
            return;
        }
        let Some(crd_type) = self
            .resolve("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .cloned()
        else {
            return;
        };
        if let Ok(current) = self.get(&crd_type, "", &name) {
            // Keep transition times when the conditions already say the same.
            if current["status"]["acceptedNames"] == accepted
                && current["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.len() == 2)
            {
                return;
            }
            let mut updated = current;
            updated["status"] = status;
            let _ = self.write(
                &crd_type,
                "",
                &name,
                updated,
                Subresource::Status,
                &WriteOptions::default(),
            );
        }
    }

    fn crd_removed(&mut self, name: &str) {
        let removed: Vec<ResourceType> = self
            .types
            .iter()
            .filter(|t| t.crd.as_deref() == Some(name))
            .cloned()
            .collect();
        if let Some(rt) = removed.first() {
            let keys: Vec<ObjectKey> = self
                .bucket(rt)
                .map(|b| b.keys().cloned().collect())
                .unwrap_or_default();
            for (ns, n) in keys {
                let _ = self.force_remove(rt, &ns, &n);
            }
            self.objects.remove(&rt.key());
        }
        self.types.retain(|t| t.crd.as_deref() != Some(name));
    }

    /// Objects (of any type) whose ownerReferences name `uid`.
    pub fn dependents_of(&self, uid: &str) -> Vec<(ResourceType, String, String)> {
        let mut out = Vec::new();
        for (tk, bucket) in &self.objects {
            let Some(rt) = self.types.iter().find(|t| t.key() == *tk) else {
                continue;
            };
            for ((ns, name), o) in bucket {
                if o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
                {
                    out.push((rt.clone(), ns.clone(), name.clone()));
                }
            }
        }
        out
    }

    /// True when some stored object has this uid.
    pub fn uid_exists(&self, uid: &str) -> bool {
        self.objects
            .values()
            .any(|b| b.values().any(|o| o["metadata"]["uid"] == uid))
    }
}

/// `stringData` is write-only: the API server merges it into `data` (base64).
fn secret_string_data(object: &mut Value) {
    let Some(string_data) = object.get("stringData").and_then(Value::as_object).cloned() else {
        return;
    };
    if !object["data"].is_object() {
        object["data"] = json!({});
    }
    for (k, v) in string_data {
        let text = v.as_str().unwrap_or_default();
        object["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
    if let Some(m) = object.as_object_mut() {
        m.remove("stringData");
    }
}

/// Options of a delete request.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub orphan: bool,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

fn encode_continue(revision: u64, ns: &str, name: &str) -> String {
    let raw = json!({"rv": revision, "ns": ns, "name": name}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(u64, String, String)> {
    let bad = || ApiError::bad_request("continue key is not valid");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Map<String, Value> = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((
        v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?,
        v.get("ns")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        v.get("name")
            .and_then(Value::as_str)
            .ok_or_else(bad)?
            .to_owned(),
    ))
}
