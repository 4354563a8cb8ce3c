//! Condition and Event reasons of a ForecastModel, as users alert on them: one list shared
//! by the operator, its tests and the README (a test checks the README names each).

/// `Ready`: every replica is ready and serves the served version.
pub const SERVING: &str = "Serving";
/// `Ready=False`: some replicas are not ready.
pub const PODS_NOT_READY: &str = "PodsNotReady";
/// `Ready=False`: no version is known yet.
pub const NO_VERSION: &str = "NoVersion";
/// `Ready`/`Degraded` and an Event: the spec is invalid in a way the schema cannot refuse.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// `Progressing=True`: pods are being moved to a new version.
pub const ROLLING_OUT: &str = "RollingOut";
/// `Progressing=True`: pods are not all on the served version.
pub const CONVERGING: &str = "Converging";
/// `Progressing=False`: nothing to do.
pub const IDLE: &str = "Idle";
/// `Degraded=True` and an Event: the last rollout failed and was reverted.
pub const ROLLOUT_FAILED: &str = "RolloutFailed";
/// `Degraded=True`: a rollout stopped on a transient fault (a pod or its registry did not
/// answer, a 5xx); switched pods were reverted and the version is tried again.
pub const ROLLOUT_INTERRUPTED: &str = "RolloutInterrupted";
/// `Degraded=True`: pods could not be brought back onto the served version.
pub const CONVERGE_FAILED: &str = "ConvergeFailed";
/// `Degraded=True`: the selector resolves to no version.
pub const VERSION_NOT_FOUND: &str = "VersionNotFound";
/// `Degraded=True`: the registry refused the credentials (401/403).
pub const REGISTRY_UNAUTHORIZED: &str = "RegistryUnauthorized";
/// `Degraded=True`: the `credentialsSecret` is missing or incomplete.
pub const REGISTRY_CREDENTIALS: &str = "RegistryCredentials";
/// `Degraded=True`: the registry answered another error.
pub const REGISTRY_ERROR: &str = "RegistryError";
/// `Ready`/`Degraded` and an Event: an object the operator would own (Deployment, Service,
/// ConfigMap, Secret) exists and is not controlled by this ForecastModel; it is left as is.
pub const OWNERSHIP_CONFLICT: &str = "OwnershipConflict";
/// `Degraded=False`.
pub const AS_EXPECTED: &str = "AsExpected";
/// `RegistryReachable=True`.
pub const REACHABLE: &str = "Reachable";
/// `RegistryReachable=False`.
pub const UNREACHABLE: &str = "Unreachable";
/// `RegistryReachable=Unknown`: not asked (the `credentialsSecret` cannot be read).
pub const NOT_ASKED: &str = "NotAsked";

/// Event: a rollout to a new version began.
pub const ROLLOUT_STARTED: &str = "RolloutStarted";
/// Event: one pod serves the new version.
pub const POD_RELOADED: &str = "PodReloaded";
/// Event: every pod serves the new version.
pub const ROLLOUT_SUCCEEDED: &str = "RolloutSucceeded";
/// Event: the pods already switched were reloaded back.
pub const ROLLED_BACK: &str = "RolledBack";
/// Event: the registry could not be reached.
pub const REGISTRY_UNREACHABLE: &str = "RegistryUnreachable";
/// `Progressing=True`: canary pods serve the new version and bake before the verdict.
pub const CANARY_BAKING: &str = "CanaryBaking";
/// `Degraded=True` and an Event: the canary verdict failed (the event names each figure and
/// its limit); the canary pods were reverted and the version marked failed.
pub const ANALYSIS_FAILED: &str = "AnalysisFailed";
/// `Degraded=True` and an Event: the canary pods had too little traffic by `maxBake`; the
/// canary pods were reverted and the version marked failed.
pub const ANALYSIS_INCONCLUSIVE: &str = "AnalysisInconclusive";
/// Event: the canary pods are being switched to a new version.
pub const CANARY_STARTED: &str = "CanaryStarted";
/// Event: the canary verdict passed (with the figures); the rest of the pods follow.
pub const CANARY_PASSED: &str = "CanaryPassed";
/// Event (Warning): a canary is configured but fewer than two pods are ready; every pod
/// rolls at once.
pub const CANARY_SKIPPED: &str = "CanarySkipped";
/// `status.history`: a rollout stopped because the registry moved on before it finished.
pub const SUPERSEDED: &str = "Superseded";
/// Event: pods loaded the shadow version.
pub const SHADOW_LOADED: &str = "ShadowLoaded";
/// Event: pods unloaded their shadow (the spec has none any more).
pub const SHADOW_UNLOADED: &str = "ShadowUnloaded";
/// Event (Warning): pods could not load the shadow version (serving is unaffected).
pub const SHADOW_LOAD_FAILED: &str = "ShadowLoadFailed";
/// `Reconciling=True`: the shadow version is not yet loaded in every ready pod.
pub const SHADOW_LOADING: &str = "ShadowLoading";
/// `Drifting=True` (and its Warning event): a feature's PSI is over `maxPsi` on a pod.
pub const DRIFT_DETECTED: &str = "DriftDetected";
/// `Drifting=False`: every feature within `maxPsi` on every pod with enough rows.
pub const NO_DRIFT: &str = "NoDrift";
/// `Drifting=Unknown`: no pod has `minRows` rows in its drift window (or none answered).
pub const TOO_FEW_ROWS: &str = "TooFewRows";

/// Every reason above.
pub const ALL: &[&str] = &[
    SERVING,
    PODS_NOT_READY,
    NO_VERSION,
    INVALID_SPEC,
    ROLLING_OUT,
    CONVERGING,
    IDLE,
    ROLLOUT_FAILED,
    ROLLOUT_INTERRUPTED,
    CONVERGE_FAILED,
    VERSION_NOT_FOUND,
    REGISTRY_UNAUTHORIZED,
    REGISTRY_CREDENTIALS,
    REGISTRY_ERROR,
    OWNERSHIP_CONFLICT,
    AS_EXPECTED,
    REACHABLE,
    UNREACHABLE,
    NOT_ASKED,
    ROLLOUT_STARTED,
    POD_RELOADED,
    ROLLOUT_SUCCEEDED,
    ROLLED_BACK,
    REGISTRY_UNREACHABLE,
    CANARY_BAKING,
    ANALYSIS_FAILED,
    ANALYSIS_INCONCLUSIVE,
    CANARY_STARTED,
    CANARY_PASSED,
    CANARY_SKIPPED,
    SUPERSEDED,
    SHADOW_LOADED,
    SHADOW_UNLOADED,
    SHADOW_LOAD_FAILED,
    SHADOW_LOADING,
    DRIFT_DETECTED,
    NO_DRIFT,
    TOO_FEW_ROWS,
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_names_every_reason_users_can_alert_on() {
        let readme = include_str!("../../../README.md");
        for reason in super::ALL {
            assert!(
                readme.contains(&format!("`{reason}`")),
                "README.md does not document the reason `{reason}`"
            );
        }
    }
}
