//! Conditions in the Kubernetes convention: the desired state of each, and the written
//! list that keeps `lastTransitionTime` while a status does not change.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    /// Could not be checked.
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }

    /// The status a written condition has (anything unexpected reads as `Unknown`).
    pub fn parse(text: &str) -> Self {
        match text {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// The most bytes of a message copied into a condition or an event: registry answers and
/// pods' refusals end up in messages, and they are untrusted.
pub const MESSAGE_LIMIT: usize = 1024;

/// `message` cut to at most [`MESSAGE_LIMIT`] bytes at a character boundary, marked `…`.
pub fn bounded(mut message: String) -> String {
    if message.len() <= MESSAGE_LIMIT {
        return message;
    }
    let mut end = MESSAGE_LIMIT - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push('…');
    message
}

/// The desired state of one condition; `reason` is one of `api::reasons`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionState {
    pub status: ConditionStatus,
    pub reason: &'static str,
    pub message: String,
}

impl ConditionState {
    pub fn new(
        status: impl Into<ConditionStatus>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ConditionState {
            status: status.into(),
            reason,
            message: bounded(message.into()),
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// The desired conditions, by type.
pub type Desired = BTreeMap<&'static str, ConditionState>;

/// The status of the condition `kind` in a written list.
pub fn status_of(conditions: &[Condition], kind: &str) -> Option<ConditionStatus> {
    conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| ConditionStatus::parse(&c.status))
}

/// The conditions to write, keeping `lastTransitionTime` where the status did not change.
pub fn written(
    previous: &[Condition],
    desired: &Desired,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|(kind, state)| {
            let status = state.status.as_str();
            let last = previous
                .iter()
                .find(|c| c.type_ == *kind && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: (*kind).to_owned(),
                status: status.into(),
                reason: state.reason.into(),
                message: state.message.clone(),
                last_transition_time: last,
                observed_generation: generation,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use api::reasons;

    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap())
    }

    #[test]
    fn an_unknown_condition_is_written_as_unknown() {
        let mut want = Desired::new();
        want.insert(
            "RegistryReachable",
            ConditionState::new(
                ConditionStatus::Unknown,
                reasons::NOT_ASKED,
                "no credentials",
            ),
        );
        let written = written(&[], &want, Some(2), &at(0));
        assert_eq!(written[0].status, "Unknown");
        assert_eq!(written[0].reason, reasons::NOT_ASKED);
        assert_eq!(written[0].observed_generation, Some(2));
        assert_eq!(
            status_of(&written, "RegistryReachable"),
            Some(ConditionStatus::Unknown)
        );
        assert_eq!(status_of(&written, "Ready"), None);
    }

    #[test]
    fn transition_times_move_only_when_a_status_changes() {
        let mut want = Desired::new();
        want.insert("Ready", ConditionState::new(true, reasons::SERVING, "ok"));
        let first = written(&[], &want, Some(1), &at(0));
        let same = written(&first, &want, Some(2), &at(60));
        assert_eq!(same[0].last_transition_time, at(0));
        want.insert(
            "Ready",
            ConditionState::new(false, reasons::PODS_NOT_READY, "..."),
        );
        let changed = written(&same, &want, Some(2), &at(60));
        assert_eq!(changed[0].last_transition_time, at(60));
    }
}
