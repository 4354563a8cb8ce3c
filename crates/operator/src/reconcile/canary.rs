//! Canary staging, pure: given the plan's rollout, the canary spec and the rollout in
//! progress (`status.rollout`, so a new leader resumes where the last one was), what this
//! reconcile does — start a canary, go on baking and judge, promote, or roll directly.

use api::forecast_model::{CanarySpec, RolloutPhase, RolloutProgress};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::reconcile::analysis::CanarySettings;
use crate::reconcile::plan::{Plan, PodObservation};

/// `spec.rollout.canary.pods`: a count or a share of the replicas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CanaryPods {
    Count(u32),
    Percent(u32),
}

impl CanaryPods {
    /// Reads `1` or `"25%"`; the error names the field.
    pub fn parse(value: &IntOrString) -> Result<Self, String> {
        let field = "spec.rollout.canary.pods";
        match value {
            IntOrString::Int(n) if *n >= 1 => Ok(CanaryPods::Count(n.unsigned_abs())),
            IntOrString::Int(n) => Err(format!("{field}: {n} is less than 1")),
            IntOrString::String(s) => {
                let pct = s
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<u32>().ok())
                    .filter(|p| (1..=100).contains(p))
                    .ok_or_else(|| {
                        format!(
                            "{field}: {s:?} is neither a number nor a percentage from 1% to 100%"
                        )
                    })?;
                Ok(CanaryPods::Percent(pct))
            }
        }
    }

    /// How many pods of `replicas`, rounded up, at least 1.
    pub fn of(self, replicas: usize) -> usize {
        match self {
            CanaryPods::Count(n) => n as usize,
            CanaryPods::Percent(p) => (replicas * p as usize).div_ceil(100),
        }
        .max(1)
    }
}

/// A canary spec with its fields read.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    pub pods: CanaryPods,
    pub settings: CanarySettings,
}

impl Canary {
    /// Reads the spec; the error names the field.
    pub fn read(spec: &CanarySpec) -> Result<Self, String> {
        let duration = |field: &str, d: &api::forecast_model::SpecDuration| {
            d.value()
                .map_err(|e| format!("spec.rollout.canary.{field}: {e}"))
        };
        let bake = duration("bake", &spec.bake)?;
        let max_bake = duration("maxBake", &spec.max_bake)?;
        if max_bake < bake {
            return Err(format!(
                "spec.rollout.canary.maxBake ({}) is shorter than bake ({})",
                spec.max_bake, spec.bake
            ));
        }
        let limits = &spec.analysis;
        for (field, value) in [
            ("maxErrorRate", limits.max_error_rate),
            ("maxLatencyRatio", limits.max_latency_ratio),
            ("maxPredictionShift", limits.max_prediction_shift),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(format!(
                    "spec.rollout.canary.analysis.{field}: {value} is not a number of at least 0"
                ));
            }
        }
        Ok(Canary {
            pods: CanaryPods::parse(&spec.pods)?,
            settings: CanarySettings {
                bake,
                max_bake,
                min_requests: u64::try_from(spec.min_requests.max(1)).unwrap_or(1),
                limits: limits.clone(),
            },
        })
    }
}

/// What this reconcile does with the plan's rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// Roll every pod the plan names (no canary, or nothing to compare with).
    Direct,
    /// Too few ready pods to keep a baseline beside a canary: roll directly, and say so.
    Skipped { ready: usize },
    /// Switch `canary` first (those in `reload` do not serve the target yet), then bake.
    Start {
        canary: Vec<String>,
        reload: Vec<String>,
    },
    /// The canary pods (`canary`, still serving the target) bake; judge by `settings` when
    /// due.
    Bake {
        progress: Box<RolloutProgress>,
        canary: Vec<String>,
        settings: CanarySettings,
    },
    /// The verdict passed (recorded before a restart): roll the rest.
    Promote,
}

pub fn stage(
    plan: &Plan,
    canary: Option<&Canary>,
    progress: Option<&RolloutProgress>,
    pods: &[PodObservation],
) -> Stage {
    let (Plan::Rollout { target, from, .. }, Some(canary)) = (plan, canary) else {
        return Stage::Direct;
    };
    // Only a move from a served version has a baseline to judge against.
    let Some(from) = from.as_deref().filter(|f| *f != target) else {
        return Stage::Direct;
    };
    let same_rollout = progress.filter(|p| {
        p.version.as_deref() == Some(target.as_str()) && p.from.as_deref() == Some(from)
    });
    let serving_target = |name: &String| {
        pods.iter()
            .any(|p| p.name == *name && p.ready && p.version.as_deref() == Some(target.as_str()))
    };
    if let Some(p) = same_rollout {
        match p.phase {
            RolloutPhase::Promoting => return Stage::Promote,
            RolloutPhase::Baking if p.bake_started_at.is_some() => {
                let alive: Vec<String> = p
                    .canary_pods
                    .iter()
                    .filter(|n| serving_target(n))
                    .cloned()
                    .collect();
                if !alive.is_empty() {
                    return Stage::Bake {
                        progress: Box::new(p.clone()),
                        canary: alive,
                        settings: canary.settings.clone(),
                    };
                }
            }
            _ => {}
        }
    }
    let mut candidates: Vec<&PodObservation> = pods
        .iter()
        .filter(|p| p.ready && p.base_url.is_some() && p.version.is_some())
        .collect();
    if candidates.len() < 2 {
        return Stage::Skipped {
            ready: candidates.len(),
        };
    }
    // Pods already on the target first (nothing to reload), then by name.
    candidates.sort_by_key(|p| {
        (
            p.version.as_deref() != Some(target.as_str()),
            p.name.clone(),
        )
    });
    let count = canary.pods.of(pods.len()).min(candidates.len() - 1);
    let chosen: Vec<&PodObservation> = candidates.into_iter().take(count).collect();
    Stage::Start {
        canary: chosen.iter().map(|p| p.name.clone()).collect(),
        reload: chosen
            .iter()
            .filter(|p| p.version.as_deref() != Some(target.as_str()))
            .map(|p| p.name.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::plan::tests::pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;

    fn rollout(target: &str, from: &str, pods: &[&str]) -> Plan {
        Plan::Rollout {
            target: target.into(),
            from: Some(from.into()),
            pods: pods.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn canary(pods: IntOrString) -> Canary {
        Canary::read(&CanarySpec {
            pods,
            ..serde_json::from_str("{}").unwrap()
        })
        .unwrap()
    }

    #[test]
    fn canary_pods_are_a_count_or_a_share_rounded_up() {
        assert_eq!(CanaryPods::parse(&IntOrString::Int(2)).unwrap().of(10), 2);
        assert_eq!(
            CanaryPods::parse(&IntOrString::String("25%".into()))
                .unwrap()
                .of(10),
            3
        );
        assert_eq!(
            CanaryPods::parse(&IntOrString::String("1%".into()))
                .unwrap()
                .of(3),
            1
        );
        for bad in [
            IntOrString::Int(0),
            IntOrString::String("abc".into()),
            IntOrString::String("0%".into()),
            IntOrString::String("120%".into()),
        ] {
            let e = CanaryPods::parse(&bad).unwrap_err();
            assert!(e.starts_with("spec.rollout.canary.pods"), "{e}");
        }
        let mut spec: CanarySpec =
            serde_json::from_str(r#"{"bake": "5m", "maxBake": "1m"}"#).unwrap();
        assert!(Canary::read(&spec).unwrap_err().contains("maxBake"));
        spec.max_bake = api::forecast_model::SpecDuration::parse("10m");
        spec.analysis.max_prediction_shift = f64::NAN;
        assert!(
            Canary::read(&spec)
                .unwrap_err()
                .contains("maxPredictionShift")
        );
    }

    #[test]
    fn a_canary_starts_on_the_first_pods_and_keeps_a_baseline() {
        let pods = vec![pod("c", "1"), pod("a", "1"), pod("b", "1")];
        let plan = rollout("2", "1", &["a", "b", "c"]);
        assert_eq!(
            stage(&plan, Some(&canary(IntOrString::Int(1))), None, &pods),
            Stage::Start {
                canary: vec!["a".into()],
                reload: vec!["a".into()]
            }
        );
        // Never every pod: one stays as the baseline.
        let all = stage(
            &plan,
            Some(&canary(IntOrString::String("100%".into()))),
            None,
            &pods,
        );
        assert!(matches!(all, Stage::Start { canary, .. } if canary.len() == 2));
        // A pod already on the target is the canary without a reload.
        let pods = vec![pod("a", "1"), pod("b", "2"), pod("c", "1")];
        assert_eq!(
            stage(
                &rollout("2", "1", &["a", "c"]),
                Some(&canary(IntOrString::Int(1))),
                None,
                &pods
            ),
            Stage::Start {
                canary: vec!["b".into()],
                reload: vec![]
            }
        );
        assert_eq!(
            stage(
                &plan,
                Some(&canary(IntOrString::Int(1))),
                None,
                &[pod("a", "1")]
            ),
            Stage::Skipped { ready: 1 }
        );
        assert_eq!(stage(&plan, None, None, &pods), Stage::Direct);
        // Bringing stragglers back to the served version is no canary.
        assert_eq!(
            stage(
                &rollout("1", "1", &["b"]),
                Some(&canary(IntOrString::Int(1))),
                None,
                &pods
            ),
            Stage::Direct
        );
    }

    #[test]
    fn a_bake_in_status_resumes_while_its_canary_pods_serve_the_target() {
        let baking = RolloutProgress {
            phase: RolloutPhase::Baking,
            version: Some("2".into()),
            from: Some("1".into()),
            canary_pods: vec!["a".into()],
            bake_started_at: Some(MicroTime(Timestamp::from_second(1_700_000_000).unwrap())),
            ..RolloutProgress::default()
        };
        let c = canary(IntOrString::Int(1));
        let plan = rollout("2", "1", &["b", "c"]);
        let pods = vec![pod("a", "2"), pod("b", "1"), pod("c", "1")];
        assert_eq!(
            stage(&plan, Some(&c), Some(&baking), &pods),
            Stage::Bake {
                progress: Box::new(baking.clone()),
                canary: vec!["a".into()],
                settings: c.settings.clone(),
            }
        );
        // The canary pod went away (or back): a new canary, a new window.
        let pods = vec![pod("a", "1"), pod("b", "1"), pod("c", "1")];
        assert!(matches!(
            stage(
                &rollout("2", "1", &["a", "b", "c"]),
                Some(&c),
                Some(&baking),
                &pods
            ),
            Stage::Start { .. }
        ));
        // Another target: the old bake does not apply.
        let pods = vec![pod("a", "2"), pod("b", "1"), pod("c", "1")];
        assert!(matches!(
            stage(
                &rollout("3", "1", &["a", "b", "c"]),
                Some(&c),
                Some(&baking),
                &pods
            ),
            Stage::Start { .. }
        ));
        let promoting = RolloutProgress {
            phase: RolloutPhase::Promoting,
            ..baking
        };
        assert_eq!(
            stage(&plan, Some(&c), Some(&promoting), &pods),
            Stage::Promote
        );
    }
}
