//! The conditions GitOps tools read: kstatus (Flux's `wait`/`healthChecks`, `kubectl wait`)
//! knows only `Reconciling` and `Stalled` besides `Ready`. Both are derived here, as a pure
//! function, from the conditions the operator already decided, so they never disagree
//! with `Progressing` and `Degraded`.
//!
//! - `Reconciling=True` while pods are being moved to a version (a rollout, a canary and its
//!   bake, pods converging) or loading the shadow: a registry-driven rollout bumps no
//!   `metadata.generation`, so this is the only sign of it a GitOps tool gets.
//! - `Stalled=True` when the operator has given up until the spec or the registry changes
//!   (an invalid spec, an object held by someone else, unusable credentials, a desired
//!   version in `failedVersions`), with `Degraded`'s reason and message. Transient faults
//!   (`RegistryError`, `RolloutInterrupted`, ...) are not stalled.
//!
//! Never both: kstatus reads the first true one, and a stalled model is not progressing.

use api::forecast_model::condition;
use api::reasons;

use crate::reconcile::conditions::{ConditionState, Desired};

/// `Degraded` reasons that only a change of the spec or the registry clears.
pub const STALLED_REASONS: &[&str] = &[
    reasons::INVALID_SPEC,
    reasons::OWNERSHIP_CONFLICT,
    reasons::REGISTRY_CREDENTIALS,
    reasons::ROLLOUT_FAILED,
    reasons::ANALYSIS_FAILED,
    reasons::ANALYSIS_INCONCLUSIVE,
];

/// Adds `Reconciling` and `Stalled` to `desired` (which holds `Progressing` and
/// `Degraded` when the reconcile decided them). `shadow_loading`: the spec's shadow
/// version is not yet loaded in every ready pod.
pub fn add_kstatus_conditions(desired: &mut Desired, shadow_loading: bool) {
    let stalled = desired
        .get(condition::DEGRADED)
        .filter(|d| d.is_true() && STALLED_REASONS.contains(&d.reason))
        .map(|d| ConditionState::new(true, d.reason, d.message.clone()));
    let progressing = desired
        .get(condition::PROGRESSING)
        .filter(|p| p.is_true())
        .cloned();
    let reconciling = match (&stalled, progressing) {
        (Some(s), _) => ConditionState::new(
            false,
            s.reason,
            "stalled: nothing moves until the spec or the registry changes",
        ),
        (None, Some(p)) => p,
        (None, None) if shadow_loading => ConditionState::new(
            true,
            reasons::SHADOW_LOADING,
            "pods are loading the shadow version",
        ),
        (None, None) => ConditionState::new(false, reasons::IDLE, "nothing in progress"),
    };
    let stalled = stalled.unwrap_or_else(|| {
        ConditionState::new(false, reasons::AS_EXPECTED, "nothing waits for a change")
    });
    desired.insert(condition::RECONCILING, reconciling);
    desired.insert(condition::STALLED, stalled);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::conditions::ConditionStatus;

    fn with(
        progressing: Option<(bool, &'static str)>,
        degraded: Option<(bool, &'static str)>,
    ) -> Desired {
        let mut d = Desired::new();
        if let Some((s, r)) = progressing {
            d.insert(
                condition::PROGRESSING,
                ConditionState::new(s, r, format!("p {r}")),
            );
        }
        if let Some((s, r)) = degraded {
            d.insert(
                condition::DEGRADED,
                ConditionState::new(s, r, format!("d {r}")),
            );
        }
        d
    }

    fn get(d: &Desired, kind: &str) -> (ConditionStatus, &'static str, String) {
        let c = &d[kind];
        (c.status, c.reason, c.message.clone())
    }

    #[test]
    fn a_rollout_or_a_bake_is_reconciling_and_not_stalled() {
        for reason in [
            reasons::ROLLING_OUT,
            reasons::CANARY_BAKING,
            reasons::CONVERGING,
        ] {
            let mut d = with(Some((true, reason)), Some((false, reasons::AS_EXPECTED)));
            add_kstatus_conditions(&mut d, false);
            assert_eq!(
                get(&d, condition::RECONCILING),
                (ConditionStatus::True, reason, format!("p {reason}"))
            );
            assert_eq!(get(&d, condition::STALLED).0, ConditionStatus::False);
            assert_eq!(get(&d, condition::STALLED).1, reasons::AS_EXPECTED);
        }
    }

    #[test]
    fn given_up_is_stalled_with_degraded_reason_and_message_and_not_reconciling() {
        for &reason in STALLED_REASONS {
            let mut d = with(Some((true, reasons::CONVERGING)), Some((true, reason)));
            add_kstatus_conditions(&mut d, true);
            assert_eq!(
                get(&d, condition::STALLED),
                (ConditionStatus::True, reason, format!("d {reason}"))
            );
            let (status, r, _) = get(&d, condition::RECONCILING);
            assert_eq!((status, r), (ConditionStatus::False, reason));
        }
    }

    #[test]
    fn transient_faults_are_neither_stalled_nor_reconciling_by_themselves() {
        for reason in [
            reasons::ROLLOUT_INTERRUPTED,
            reasons::REGISTRY_ERROR,
            reasons::CONVERGE_FAILED,
            reasons::VERSION_NOT_FOUND,
            reasons::REGISTRY_UNAUTHORIZED,
        ] {
            let mut d = with(Some((false, reasons::IDLE)), Some((true, reason)));
            add_kstatus_conditions(&mut d, false);
            assert_eq!(
                get(&d, condition::STALLED).0,
                ConditionStatus::False,
                "{reason}"
            );
            assert_eq!(
                get(&d, condition::RECONCILING),
                (
                    ConditionStatus::False,
                    reasons::IDLE,
                    "nothing in progress".into()
                )
            );
        }
        // A stalled reason on a Degraded that is not true stalls nothing.
        let mut d = with(None, Some((false, reasons::ROLLOUT_FAILED)));
        add_kstatus_conditions(&mut d, false);
        assert_eq!(get(&d, condition::STALLED).0, ConditionStatus::False);
    }

    #[test]
    fn a_shadow_still_loading_is_reconciling() {
        let mut d = with(Some((false, reasons::IDLE)), None);
        add_kstatus_conditions(&mut d, true);
        assert_eq!(get(&d, condition::RECONCILING).0, ConditionStatus::True);
        assert_eq!(get(&d, condition::RECONCILING).1, reasons::SHADOW_LOADING);
        let mut d = with(None, None);
        add_kstatus_conditions(&mut d, false);
        assert_eq!(get(&d, condition::RECONCILING).0, ConditionStatus::False);
        assert_eq!(get(&d, condition::STALLED).0, ConditionStatus::False);
    }
}
