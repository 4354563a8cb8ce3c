//! What this process remembers, one record per ForecastModel (by uid): its own writes (so
//! a reconcile neither repeats a write whose result is unchanged nor reads an older copy
//! of its own write from a watch cache that has not caught up), the admin token, and the
//! registry credentials. Nothing here is needed for correctness after a restart: the
//! cluster and the pods are the truth; this only saves calls and bridges watch delays.
//!
//! A record is dropped in one place: [`Forgetter`], fed by the ForecastModel watch, on a
//! deletion or when a relist no longer shows the uid. So the records are bounded by the
//! number of live ForecastModels.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use api::forecast_model::{ForecastModel, ForecastModelStatus};
use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::runtime::watcher;
use mlflow::Credentials;
use serde_json::Value;

/// How long a remembered admin token is used before its Secret is looked at again.
const TOKEN_RECHECK: Duration = Duration::from_secs(300);
/// How long this process trusts its own ConfigMap write over an older cached copy.
const OWN_WRITE_WINDOW: Duration = Duration::from_secs(10);
/// How long this process's own status write is preferred over the watched ForecastModel.
const OWN_STATUS_WINDOW: Duration = Duration::from_secs(30);
/// How long credentials read from a `credentialsSecret` are reused.
const CREDENTIALS_TTL: Duration = Duration::from_secs(30);

/// A digest of an apply body (stable within one operator build).
pub fn digest(body: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.to_string().hash(&mut h);
    h.finish()
}

/// What the operator last applied to one object: a digest of the applied body and the
/// object's `metadata.generation` (Deployments) or `resourceVersion` (others) right after.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Applied {
    digest: u64,
    version: String,
}

/// Everything remembered about one ForecastModel.
#[derive(Default)]
struct Record {
    applied: HashMap<&'static str, Applied>,
    /// The admin token and when its Secret was last seen or written.
    admin_token: Option<(Instant, String)>,
    /// The served version written, with the ConfigMap's resourceVersion after the write.
    served: Option<(Instant, String, String)>,
    /// The whole status last written.
    status: Option<(Instant, ForecastModelStatus)>,
    /// Credentials read from the named `credentialsSecret`.
    credentials: Option<(Instant, String, Credentials)>,
}

/// The records of every ForecastModel this process has written for.
#[derive(Default)]
pub struct Memory {
    records: Mutex<HashMap<String, Record>>,
}

fn uid_of(fm: &ForecastModel) -> String {
    fm.uid().unwrap_or_default()
}

impl Memory {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the record of `fm` (None when nothing is remembered).
    fn read<R>(&self, fm: &ForecastModel, f: impl FnOnce(&Record) -> Option<R>) -> Option<R> {
        self.lock().get(&uid_of(fm)).and_then(f)
    }

    /// Changes the record of `fm`, creating it.
    fn write<R>(&self, fm: &ForecastModel, f: impl FnOnce(&mut Record) -> R) -> R {
        f(self.lock().entry(uid_of(fm)).or_default())
    }

    /// How many ForecastModels have a record.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the record of a deleted ForecastModel.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Keeps only the records of these ForecastModels.
    pub fn retain(&self, live: &HashSet<String>) {
        self.lock().retain(|uid, _| live.contains(uid));
    }

    /// True when `observed` is still exactly what applying `digest` to `kind` produced.
    pub fn applied_unchanged(
        &self,
        fm: &ForecastModel,
        kind: &'static str,
        digest: u64,
        observed: Option<&str>,
    ) -> bool {
        let Some(observed) = observed else {
            return false;
        };
        self.read(fm, |r| r.applied.get(kind).cloned())
            .is_some_and(|a| a.digest == digest && a.version == observed)
    }

    pub fn record_applied(
        &self,
        fm: &ForecastModel,
        kind: &'static str,
        digest: u64,
        version: String,
    ) {
        self.write(fm, |r| r.applied.insert(kind, Applied { digest, version }));
    }

    /// The admin token, when its Secret was seen less than five minutes ago.
    pub fn fresh_admin_token(&self, fm: &ForecastModel) -> Option<String> {
        self.read(fm, |r| r.admin_token.clone())
            .filter(|(at, _)| at.elapsed() < TOKEN_RECHECK)
            .map(|(_, t)| t)
    }

    /// The last admin token known, however old (the one running pods were started with).
    pub fn last_admin_token(&self, fm: &ForecastModel) -> Option<String> {
        self.read(fm, |r| r.admin_token.clone()).map(|(_, t)| t)
    }

    pub fn record_admin_token(&self, fm: &ForecastModel, token: &str) {
        self.write(fm, |r| {
            r.admin_token = Some((Instant::now(), token.to_owned()))
        });
    }

    /// Records a write of the served `version` that produced `resource_version`.
    pub fn record_served(&self, fm: &ForecastModel, version: &str, resource_version: String) {
        self.write(fm, |r| {
            r.served = Some((Instant::now(), version.to_owned(), resource_version))
        });
    }

    /// The served version: the cached ConfigMap's (`cached`: version and resourceVersion),
    /// unless this process wrote a newer one the cache has not shown yet.
    pub fn served(&self, fm: &ForecastModel, cached: Option<(String, String)>) -> Option<String> {
        let mut records = self.lock();
        if let Some(record) = records.get_mut(&uid_of(fm))
            && let Some((at, version, rv)) = &record.served
        {
            let seen = cached
                .as_ref()
                .is_some_and(|(_, cached_rv)| cached_rv == rv);
            if !seen && at.elapsed() < OWN_WRITE_WINDOW {
                return Some(version.clone());
            }
            record.served = None;
        }
        cached.map(|(version, _)| version)
    }

    pub fn record_status(&self, fm: &ForecastModel, status: &ForecastModelStatus) {
        self.write(fm, |r| r.status = Some((Instant::now(), status.clone())));
    }

    /// The status to start from: this process's recent write, else the watched one. The
    /// status subresource is written only by the operator, so a reconcile that runs before
    /// the watch has delivered the last write (an owned object's change can wake it at
    /// once) starts from that write and loses nothing (previousVersion, failedVersions).
    pub fn previous_status(&self, fm: &ForecastModel) -> ForecastModelStatus {
        self.read(fm, |r| r.status.clone())
            .filter(|(at, _)| at.elapsed() < OWN_STATUS_WINDOW)
            .map(|(_, s)| s)
            .or_else(|| fm.status.clone())
            .unwrap_or_default()
    }

    /// Credentials read from the Secret `secret` less than 30 s ago.
    pub fn credentials(&self, fm: &ForecastModel, secret: &str) -> Option<Credentials> {
        self.read(fm, |r| r.credentials.clone())
            .filter(|(at, name, _)| name == secret && at.elapsed() < CREDENTIALS_TTL)
            .map(|(_, _, c)| c)
    }

    pub fn record_credentials(&self, fm: &ForecastModel, secret: &str, credentials: &Credentials) {
        self.write(fm, |r| {
            r.credentials = Some((Instant::now(), secret.to_owned(), credentials.clone()))
        });
    }
}

/// Passes the ForecastModel watch's events on, dropping records (and the ForecastModel's
/// metrics series) as they report deletions.
pub fn forget_deleted<S>(
    events: S,
    memory: Arc<Memory>,
    metrics: Arc<crate::metrics::Metrics>,
) -> impl Stream<Item = Result<watcher::Event<ForecastModel>, watcher::Error>>
where
    S: Stream<Item = Result<watcher::Event<ForecastModel>, watcher::Error>>,
{
    let mut forgetter = Forgetter::default();
    events.inspect(move |event| {
        if let Ok(event) = event {
            forgetter.observe(&memory, event);
            if let watcher::Event::Delete(fm) = event {
                metrics.forget(fm);
            }
        }
    })
}

/// Drops records as the ForecastModel watch reports deletions, and after a relist those
/// of every uid it no longer shows (a deletion missed while the watch was down).
#[derive(Default)]
pub struct Forgetter {
    relisted: Option<HashSet<String>>,
}

impl Forgetter {
    pub fn observe(&mut self, memory: &Memory, event: &watcher::Event<ForecastModel>) {
        match event {
            watcher::Event::Delete(fm) => memory.forget(&uid_of(fm)),
            watcher::Event::Init => self.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(fm) => {
                if let Some(seen) = &mut self.relisted {
                    seen.insert(uid_of(fm));
                }
            }
            watcher::Event::InitDone => {
                if let Some(seen) = self.relisted.take() {
                    memory.retain(&seen);
                }
            }
            watcher::Event::Apply(_) => {}
        }
    }
}

/// How often freed heap pages are handed back to the kernel.
const RELEASE_EVERY: Duration = Duration::from_secs(30);

/// Hands freed heap pages back to the kernel every [`RELEASE_EVERY`]. The creation burst
/// of thousands of models (initial lists, apply bodies, answers) frees far more than the
/// steady state keeps, and glibc holds freed pages in its per-thread arenas unless asked.
pub async fn release_freed_memory_periodically() {
    let mut every = tokio::time::interval(RELEASE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free heap pages back to the kernel; it touches
        // no memory in use and may be called from any thread at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fm(uid: &str) -> ForecastModel {
        let spec = serde_json::from_value(json!({
            "registry": {"trackingUri": "http://mlflow:5000"},
            "model": {"name": "m", "alias": "champion"},
        }))
        .unwrap();
        let mut fm = ForecastModel::new(uid, spec);
        fm.metadata.uid = Some(uid.into());
        fm
    }

    #[test]
    fn an_apply_is_skipped_only_while_the_object_is_what_it_produced() {
        let memory = Memory::default();
        let a = fm("a");
        let body = json!({"spec": {"replicas": 3}});
        let d = digest(&body);
        assert!(!memory.applied_unchanged(&a, "Deployment", d, Some("1")));
        memory.record_applied(&a, "Deployment", d, "1".into());
        assert!(memory.applied_unchanged(&a, "Deployment", d, Some("1")));
        // Someone changed the object (its generation moved on).
        assert!(!memory.applied_unchanged(&a, "Deployment", d, Some("2")));
        // The desired body changed.
        let other = digest(&json!({"spec": {"replicas": 4}}));
        assert!(!memory.applied_unchanged(&a, "Deployment", other, Some("1")));
        // The object is not in the cache (deleted, or not seen yet).
        assert!(!memory.applied_unchanged(&a, "Deployment", d, None));
        // Another ForecastModel's apply of the same kind is its own.
        assert!(!memory.applied_unchanged(&fm("b"), "Deployment", d, Some("1")));
    }

    #[test]
    fn an_own_write_wins_until_the_cache_shows_it() {
        let memory = Memory::default();
        let a = fm("a");
        let cached = |v: &str, rv: &str| Some((v.to_owned(), rv.to_owned()));
        assert_eq!(memory.served(&a, cached("1", "10")), Some("1".into()));
        memory.record_served(&a, "2", "11".into());
        // The watch has not delivered the write yet.
        assert_eq!(memory.served(&a, cached("1", "10")), Some("2".into()));
        assert_eq!(memory.served(&a, None), Some("2".into()));
        // Delivered: from now on the cache is the truth (also for later edits by others).
        assert_eq!(memory.served(&a, cached("2", "11")), Some("2".into()));
        assert_eq!(memory.served(&a, cached("3", "12")), Some("3".into()));
    }

    #[test]
    fn the_own_status_write_is_the_starting_point_until_it_is_old() {
        let memory = Memory::default();
        let mut a = fm("a");
        a.status = Some(ForecastModelStatus {
            served_version: Some("1".into()),
            ..Default::default()
        });
        assert_eq!(memory.previous_status(&a), a.status.clone().unwrap());
        let written = ForecastModelStatus {
            served_version: Some("2".into()),
            previous_version: Some("1".into()),
            ..Default::default()
        };
        memory.record_status(&a, &written);
        assert_eq!(memory.previous_status(&a), written);
        assert_eq!(
            memory.previous_status(&fm("b")),
            ForecastModelStatus::default()
        );
    }

    #[test]
    fn credentials_are_remembered_for_the_secret_they_came_from() {
        let memory = Memory::default();
        let a = fm("a");
        memory.record_credentials(&a, "creds", &Credentials::Token("t".into()));
        assert!(memory.credentials(&a, "creds").is_some());
        assert!(memory.credentials(&a, "other-secret").is_none());
    }

    #[test]
    fn records_are_bounded_by_the_live_forecast_models() {
        let memory = Memory::default();
        let mut forgetter = Forgetter::default();
        for uid in ["a", "b", "c", "d"] {
            memory.record_admin_token(&fm(uid), "t");
            memory.record_status(&fm(uid), &ForecastModelStatus::default());
        }
        assert_eq!(memory.len(), 4);
        forgetter.observe(&memory, &watcher::Event::Delete(fm("a")));
        assert_eq!(memory.len(), 3);
        assert!(memory.last_admin_token(&fm("a")).is_none());
        // A relist that no longer shows "b" and "c" (deleted while the watch was down).
        forgetter.observe(&memory, &watcher::Event::Init);
        forgetter.observe(&memory, &watcher::Event::InitApply(fm("d")));
        forgetter.observe(&memory, &watcher::Event::InitApply(fm("e")));
        assert_eq!(
            memory.len(),
            3,
            "nothing is dropped before the relist is complete"
        );
        forgetter.observe(&memory, &watcher::Event::InitDone);
        assert_eq!(memory.len(), 1);
        assert_eq!(memory.last_admin_token(&fm("d")).as_deref(), Some("t"));
    }

    #[test]
    fn digests_follow_the_body() {
        assert_eq!(
            digest(&json!({"a": 1, "b": 2})),
            digest(&json!({"b": 2, "a": 1}))
        );
        assert_ne!(digest(&json!({"a": 1})), digest(&json!({"a": 2})));
    }
}
