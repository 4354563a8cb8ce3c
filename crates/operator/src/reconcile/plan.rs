//! Plan: the pure decision over what was observed — which version to roll to and which
//! pods, or why nothing moves.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// A predictor pod as observed this reconcile.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodObservation {
    pub name: String,
    /// `http://<podIP>:<port>`, when the pod has an IP.
    pub base_url: Option<String>,
    pub ready: bool,
    /// What the pod's `/model/info` reported (None: not asked or no answer).
    pub version: Option<String>,
    /// The shadow version the pod's `/model/info` reported.
    pub shadow: Option<String>,
    /// The version whose `Restart` rollout created this pod (its restart annotation).
    pub restart_marker: Option<String>,
    /// When the pod was created.
    pub created: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub paused: bool,
    /// The registry's answer; None when it could not be asked or has no such version.
    pub desired: Option<String>,
    /// The ConfigMap's served version.
    pub served: Option<String>,
    pub failed_versions: Vec<String>,
    pub pods: Vec<PodObservation>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    Paused,
    RegistryUnknown,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Every pod serves the target and the ConfigMap says so.
    Steady { version: String },
    /// Do not change anything.
    Hold(Hold),
    /// Move `pods` to `target`; `from` is what to revert to.
    Rollout {
        target: String,
        from: Option<String>,
        pods: Vec<String>,
    },
}

/// `failedVersions` after the registry answered `desired` (previously `previous`): a
/// version is retried only once the registry has moved away and back.
pub fn failed_versions_after(
    failed: &[String],
    previous: Option<&str>,
    desired: Option<&str>,
) -> Vec<String> {
    match desired {
        Some(d) if previous != Some(d) => {
            failed.iter().filter(|v| v.as_str() != d).cloned().collect()
        }
        _ => failed.to_vec(),
    }
}

pub fn plan(o: &Observed) -> Plan {
    if o.paused {
        return Plan::Hold(Hold::Paused);
    }
    let Some(desired) = o.desired.clone() else {
        return Plan::Hold(Hold::RegistryUnknown);
    };
    // A version that failed is not retried; pods that were left on it go back.
    let target = if o.failed_versions.contains(&desired) {
        match &o.served {
            Some(s) => s.clone(),
            None => return Plan::Hold(Hold::RegistryUnknown),
        }
    } else {
        desired
    };
    let pods: Vec<String> = o
        .pods
        .iter()
        .filter(|p| p.ready && p.base_url.is_some())
        .filter(|p| p.version.as_deref().is_some_and(|v| v != target))
        .map(|p| p.name.clone())
        .collect();
    if pods.is_empty() && o.served.as_deref() == Some(target.as_str()) {
        return Plan::Steady { version: target };
    }
    Plan::Rollout {
        target,
        from: o.served.clone(),
        pods,
    }
}

/// `Restart` strategy: the pods created for the `served` version (their restart marker)
/// that are still not Ready on it `verify_timeout` after they were created. Non-empty means
/// the version does not come up in new pods: the rollout failed.
pub fn stuck_after_restart(
    pods: &[PodObservation],
    served: &str,
    verify_timeout: Duration,
    now: Timestamp,
) -> Vec<String> {
    pods.iter()
        .filter(|p| p.restart_marker.as_deref() == Some(served))
        .filter(|p| !(p.ready && p.version.as_deref() == Some(served)))
        .filter(|p| {
            p.created.is_some_and(|c| {
                Duration::try_from(now.duration_since(c)).is_ok_and(|age| age > verify_timeout)
            })
        })
        .map(|p| p.name.clone())
        .collect()
}

/// The longest wait between registry retries while it is unreachable.
pub const MAX_REGISTRY_RETRY: Duration = Duration::from_secs(60);

/// When to ask an unreachable registry again: back off as long as it has been down
/// (1 s, then doubling), never longer than the poll interval or a minute. Derived from
/// the condition's `lastTransitionTime`, so a restarted operator keeps the pace.
pub fn registry_retry(unreachable_for: Duration, poll: Duration) -> Duration {
    unreachable_for
        .max(Duration::from_secs(1))
        .min(poll.min(MAX_REGISTRY_RETRY))
}

/// Splits pods into batches of at most `max_concurrent`.
pub fn batches(pods: &[String], max_concurrent: i32) -> Vec<Vec<String>> {
    let size = usize::try_from(max_concurrent).unwrap_or(1).max(1);
    pods.chunks(size).map(<[String]>::to_vec).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn an_unreachable_registry_is_retried_with_backoff_up_to_the_poll_interval() {
        let s = Duration::from_secs;
        let poll = s(30);
        assert_eq!(registry_retry(s(0), poll), s(1));
        assert_eq!(registry_retry(s(4), poll), s(4));
        assert_eq!(registry_retry(s(16), poll), s(16));
        assert_eq!(registry_retry(s(600), poll), s(30));
        assert_eq!(registry_retry(s(600), s(600)), MAX_REGISTRY_RETRY);
        assert_eq!(registry_retry(s(5), s(2)), s(2));
    }

    /// A ready pod with an address serving `version`.
    pub(crate) fn pod(name: &str, version: &str) -> PodObservation {
        PodObservation {
            name: name.into(),
            base_url: Some(format!("http://{name}")),
            ready: true,
            version: Some(version.into()),
            ..PodObservation::default()
        }
    }

    #[test]
    fn restarted_pods_not_ready_on_the_served_version_in_time_are_stuck() {
        let now = Timestamp::from_second(1_700_000_100).unwrap();
        let created =
            |secs_ago: i64| Some(Timestamp::from_second(1_700_000_100 - secs_ago).unwrap());
        let restarted = |name: &str, version: &str, ready: bool, secs_ago: i64| PodObservation {
            ready,
            restart_marker: Some("2".into()),
            created: created(secs_ago),
            ..pod(name, version)
        };
        let pods = vec![
            restarted("on-2", "2", true, 90),
            restarted("fallback-1", "1", true, 90),
            restarted("crashing", "2", false, 90),
            restarted("young", "1", false, 5),
            pod("old-template", "1"),
        ];
        let stuck = stuck_after_restart(&pods, "2", Duration::from_secs(60), now);
        assert_eq!(stuck, vec!["fallback-1", "crashing"]);
        assert!(stuck_after_restart(&pods, "3", Duration::from_secs(60), now).is_empty());
    }

    fn observed(
        desired: Option<&str>,
        served: Option<&str>,
        pods: Vec<PodObservation>,
    ) -> Observed {
        Observed {
            paused: false,
            desired: desired.map(Into::into),
            served: served.map(Into::into),
            failed_versions: vec![],
            pods,
        }
    }

    #[test]
    fn a_moved_alias_rolls_the_pods_that_serve_another_version() {
        let o = observed(
            Some("2"),
            Some("1"),
            vec![pod("a", "1"), pod("b", "2"), pod("c", "1")],
        );
        assert_eq!(
            plan(&o),
            Plan::Rollout {
                target: "2".into(),
                from: Some("1".into()),
                pods: vec!["a".into(), "c".into()]
            }
        );
        let steady = observed(Some("2"), Some("2"), vec![pod("a", "2")]);
        assert_eq!(
            plan(&steady),
            Plan::Steady {
                version: "2".into()
            }
        );
    }

    #[test]
    fn pause_and_an_unknown_registry_hold_everything() {
        let mut o = observed(Some("2"), Some("1"), vec![pod("a", "1")]);
        o.paused = true;
        assert_eq!(plan(&o), Plan::Hold(Hold::Paused));
        let o = observed(None, Some("1"), vec![pod("a", "1")]);
        assert_eq!(plan(&o), Plan::Hold(Hold::RegistryUnknown));
    }

    #[test]
    fn a_failed_version_is_not_retried_and_stragglers_go_back() {
        let mut o = observed(Some("3"), Some("2"), vec![pod("a", "3"), pod("b", "2")]);
        o.failed_versions = vec!["3".into()];
        assert_eq!(
            plan(&o),
            Plan::Rollout {
                target: "2".into(),
                from: Some("2".into()),
                pods: vec!["a".into()]
            }
        );
        assert_eq!(
            failed_versions_after(&["3".into()], Some("3"), Some("3")),
            vec!["3".to_string()]
        );
        assert!(failed_versions_after(&["3".into()], Some("4"), Some("3")).is_empty());
    }

    #[test]
    fn pods_without_a_known_version_or_not_ready_are_left_alone() {
        let mut starting = pod("s", "1");
        starting.ready = false;
        let mut silent = pod("q", "1");
        silent.version = None;
        let o = observed(Some("2"), Some("1"), vec![starting, silent]);
        assert_eq!(
            plan(&o),
            Plan::Rollout {
                target: "2".into(),
                from: Some("1".into()),
                pods: vec![]
            }
        );
        assert_eq!(batches(&["a".into(), "b".into(), "c".into()], 2).len(), 2);
        assert_eq!(batches(&["a".into()], 0).len(), 1);
    }
}
