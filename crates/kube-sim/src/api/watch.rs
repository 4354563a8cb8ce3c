//! Watch streams: replay (synthetic ADDED for a fresh watch, or the kept history after a
//! resourceVersion), then live events; bookmarks; `timeoutSeconds`; selector transitions
//! (an object leaving a selector is DELETED for that watch, entering it ADDED).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::resources::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{EventKind, WatchEvent};

pub struct WatchFilter {
    pub resource: ResourceType,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl WatchFilter {
    fn in_scope(&self, o: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| o["metadata"]["namespace"].as_str() == Some(ns))
    }

    fn selects(&self, o: &Value) -> bool {
        self.in_scope(o) && self.labels.matches(o) && self.fields.matches(o)
    }

    /// The event this watch reports for a change, if any.
    fn translate(&self, e: &WatchEvent) -> Option<(EventKind, Value)> {
        if e.resource != self.resource.key() {
            return None;
        }
        let now = self.selects(&e.object);
        let before = e.old.as_ref().is_some_and(|o| self.selects(o));
        match e.kind {
            EventKind::Added => now.then(|| (EventKind::Added, e.object.clone())),
            EventKind::Deleted => (now || before).then(|| (EventKind::Deleted, e.object.clone())),
            EventKind::Modified => match (before, now) {
                (true, true) => Some((EventKind::Modified, e.object.clone())),
                (false, true) => Some((EventKind::Added, e.object.clone())),
                (true, false) => Some((EventKind::Deleted, e.object.clone())),
                (false, false) => None,
            },
        }
    }
}

/// The event a watch with `filter` reports for `e`, if any.
pub fn translate_public(filter: &WatchFilter, e: &WatchEvent) -> Option<(EventKind, Value)> {
    filter.translate(e)
}

pub struct WatchPlan {
    pub filter: WatchFilter,
    /// Events to send first (already translated).
    pub replay: Vec<(EventKind, Value)>,
    pub receiver: broadcast::Receiver<Arc<WatchEvent>>,
    pub start_revision: u64,
    pub bookmarks: bool,
    /// Send a BOOKMARK marking the end of the initial events (sendInitialEvents=true).
    pub initial_events_end: bool,
    pub timeout: Duration,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(rt: &ResourceType, revision: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta}),
    )
}

struct State {
    plan: WatchPlan,
    pending: VecDeque<Bytes>,
    last_revision: u64,
    deadline: Instant,
}

const BOOKMARK_EVERY: Duration = Duration::from_secs(2);

pub fn stream(plan: WatchPlan) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let deadline = Instant::now() + plan.timeout;
    let mut pending: VecDeque<Bytes> = plan
        .replay
        .iter()
        .map(|(k, o)| line(k.as_str(), o))
        .collect();
    if plan.initial_events_end {
        pending.push_back(bookmark(&plan.filter.resource, plan.start_revision, true));
    }
    let state = State {
        last_revision: plan.start_revision,
        plan,
        pending,
        deadline,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.pending.pop_front() {
                return Some((Ok(b), st));
            }
            tokio::select! {
                received = st.plan.receiver.recv() => match received {
                    Ok(e) => {
                        if e.revision <= st.plan.start_revision {
                            continue;
                        }
                        st.last_revision = e.revision;
                        if let Some((kind, object)) = st.plan.filter.translate(&e) {
                            return Some((Ok(line(kind.as_str(), &object)), st));
                        }
                    }
                    // A watcher that falls this far behind is closed; the client resumes
                    // from the last resourceVersion it saw, as with a real server.
                    Err(_) => return None,
                },
                _ = tokio::time::sleep(BOOKMARK_EVERY), if st.plan.bookmarks => {
                    let b = bookmark(&st.plan.filter.resource, st.last_revision, false);
                    return Some((Ok(b), st));
                }
                _ = tokio::time::sleep_until(st.deadline) => return None,
            }
        }
    })
}
