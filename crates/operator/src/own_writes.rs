//! What this process wrote or last saw of the objects it owns, so that a reconcile
//! neither repeats a write whose result is unchanged nor reads an older copy of its own
//! write from a watch cache that has not caught up.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use api::forecast_model::ForecastModelStatus;
use serde_json::Value;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the operator last applied to one object: a digest of the applied body and the
/// object's `metadata.generation` (Deployments) or `resourceVersion` (others) right after.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Applied {
    digest: u64,
    version: String,
}

/// A digest of an apply body (stable within one operator build).
pub fn digest(body: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.to_string().hash(&mut h);
    h.finish()
}

/// The applies this process made, to skip repeating one whose result is unchanged.
#[derive(Default)]
pub struct AppliedObjects {
    applied: Mutex<HashMap<(String, &'static str), Applied>>,
}

impl AppliedObjects {
    /// True when `observed` is still exactly what applying `digest` produced.
    pub fn unchanged(
        &self,
        owner_uid: &str,
        kind: &'static str,
        digest: u64,
        observed: Option<&str>,
    ) -> bool {
        let Some(observed) = observed else {
            return false;
        };
        lock(&self.applied)
            .get(&(owner_uid.to_owned(), kind))
            .is_some_and(|a| a.digest == digest && a.version == observed)
    }

    pub fn record(&self, owner_uid: &str, kind: &'static str, digest: u64, version: String) {
        lock(&self.applied).insert((owner_uid.to_owned(), kind), Applied { digest, version });
    }

    /// Keeps only the records of these ForecastModels (the others are gone).
    pub fn retain_owners(&self, owners: &HashSet<String>) {
        lock(&self.applied).retain(|(uid, _), _| owners.contains(uid));
    }
}

/// How long a remembered admin token is used before its Secret is looked at again.
const TOKEN_RECHECK: Duration = Duration::from_secs(300);

/// The admin token of each ForecastModel (by uid), as this process last saw or wrote it.
#[derive(Default)]
pub struct AdminTokens {
    tokens: Mutex<HashMap<String, (Instant, String)>>,
}

impl AdminTokens {
    /// The token, when its Secret was seen less than five minutes ago.
    pub fn fresh(&self, owner_uid: &str) -> Option<String> {
        lock(&self.tokens)
            .get(owner_uid)
            .filter(|(at, _)| at.elapsed() < TOKEN_RECHECK)
            .map(|(_, t)| t.clone())
    }

    /// The last token known, however old (the one running pods were started with).
    pub fn last(&self, owner_uid: &str) -> Option<String> {
        lock(&self.tokens).get(owner_uid).map(|(_, t)| t.clone())
    }

    pub fn record(&self, owner_uid: &str, token: &str) {
        lock(&self.tokens).insert(owner_uid.to_owned(), (Instant::now(), token.to_owned()));
    }

    /// Keeps only the tokens of these ForecastModels.
    pub fn retain_owners(&self, owners: &HashSet<String>) {
        lock(&self.tokens).retain(|uid, _| owners.contains(uid));
    }
}

/// How long this process trusts its own ConfigMap write over an older cached copy.
const OWN_WRITE_WINDOW: Duration = Duration::from_secs(10);

/// The served versions this process wrote, so a reconcile that runs before the watch has
/// delivered the write does not read the previous value from the cache.
#[derive(Default)]
pub struct ServedVersions {
    written: Mutex<HashMap<String, (Instant, String, String)>>,
}

impl ServedVersions {
    /// Records a write of `version` that produced `resource_version`.
    pub fn record(&self, owner_uid: &str, version: &str, resource_version: String) {
        lock(&self.written).insert(
            owner_uid.to_owned(),
            (Instant::now(), version.to_owned(), resource_version),
        );
    }

    /// The served version: the cached ConfigMap's (`cached`: version and resourceVersion),
    /// unless this process wrote a newer one the cache has not shown yet.
    pub fn current(&self, owner_uid: &str, cached: Option<(String, String)>) -> Option<String> {
        let mut written = lock(&self.written);
        if let Some((at, version, rv)) = written.get(owner_uid) {
            let seen = cached
                .as_ref()
                .is_some_and(|(_, cached_rv)| cached_rv == rv);
            if !seen && at.elapsed() < OWN_WRITE_WINDOW {
                return Some(version.clone());
            }
            written.remove(owner_uid);
        }
        cached.map(|(version, _)| version)
    }
}

/// How long this process's own status write is preferred over the watched ForecastModel.
const OWN_STATUS_WINDOW: Duration = Duration::from_secs(30);

/// The status this process last wrote for each ForecastModel. The status subresource is
/// written only by the operator, so a reconcile that runs before the watch has delivered
/// the last write (an owned object's change can wake it at once) starts from this one
/// instead of a stale copy and loses nothing (previousVersion, failedVersions).
#[derive(Default)]
pub struct OwnStatuses {
    written: Mutex<HashMap<String, (Instant, ForecastModelStatus)>>,
}

impl OwnStatuses {
    pub fn record(&self, owner_uid: &str, status: &ForecastModelStatus) {
        lock(&self.written).insert(owner_uid.to_owned(), (Instant::now(), status.clone()));
    }

    /// The status to start from: this process's recent write, else the watched one.
    pub fn previous(
        &self,
        owner_uid: &str,
        watched: Option<&ForecastModelStatus>,
    ) -> ForecastModelStatus {
        let mut written = lock(&self.written);
        match written.get(owner_uid) {
            Some((at, status)) if at.elapsed() < OWN_STATUS_WINDOW => status.clone(),
            Some(_) => {
                written.remove(owner_uid);
                watched.cloned().unwrap_or_default()
            }
            None => watched.cloned().unwrap_or_default(),
        }
    }

    /// Keeps only the statuses of these ForecastModels.
    pub fn retain_owners(&self, owners: &HashSet<String>) {
        lock(&self.written).retain(|uid, _| owners.contains(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_apply_is_skipped_only_while_the_object_is_what_it_produced() {
        let applied = AppliedObjects::default();
        let body = json!({"spec": {"replicas": 3}});
        let d = digest(&body);
        assert!(!applied.unchanged("uid", "Deployment", d, Some("1")));
        applied.record("uid", "Deployment", d, "1".into());
        assert!(applied.unchanged("uid", "Deployment", d, Some("1")));
        // Someone changed the object (its generation moved on).
        assert!(!applied.unchanged("uid", "Deployment", d, Some("2")));
        // The desired body changed.
        let other = digest(&json!({"spec": {"replicas": 4}}));
        assert!(!applied.unchanged("uid", "Deployment", other, Some("1")));
        // The object is not in the cache (deleted, or not seen yet).
        assert!(!applied.unchanged("uid", "Deployment", d, None));
        applied.retain_owners(&Default::default());
        assert!(!applied.unchanged("uid", "Deployment", d, Some("1")));
    }

    #[test]
    fn an_own_write_wins_until_the_cache_shows_it() {
        let served = ServedVersions::default();
        let cached = |v: &str, rv: &str| Some((v.to_owned(), rv.to_owned()));
        assert_eq!(served.current("uid", cached("1", "10")), Some("1".into()));
        served.record("uid", "2", "11".into());
        // The watch has not delivered the write yet.
        assert_eq!(served.current("uid", cached("1", "10")), Some("2".into()));
        assert_eq!(served.current("uid", None), Some("2".into()));
        // Delivered: from now on the cache is the truth (also for later edits by others).
        assert_eq!(served.current("uid", cached("2", "11")), Some("2".into()));
        assert_eq!(served.current("uid", cached("3", "12")), Some("3".into()));
    }

    #[test]
    fn the_own_status_write_is_the_starting_point_until_it_is_old() {
        let own = OwnStatuses::default();
        let stale = ForecastModelStatus {
            served_version: Some("1".into()),
            ..Default::default()
        };
        assert_eq!(own.previous("uid", Some(&stale)), stale);
        let written = ForecastModelStatus {
            served_version: Some("2".into()),
            previous_version: Some("1".into()),
            ..Default::default()
        };
        own.record("uid", &written);
        assert_eq!(own.previous("uid", Some(&stale)), written);
        assert_eq!(own.previous("other", None), ForecastModelStatus::default());
        own.retain_owners(&Default::default());
        assert_eq!(own.previous("uid", Some(&stale)), stale);
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
