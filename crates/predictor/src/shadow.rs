//! The shadow challenger: a second model loaded beside the served one. Every answered
//! prediction request is offered to it; it scores the same rows on its own thread, off the
//! response path, through a bounded queue (full → the request is dropped and counted), at a
//! lower CPU priority than the served model's predictions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use api::predictor::ShadowInfo;
use arc_swap::ArcSwapOption;

use crate::input::Matrix;
use crate::loader::ServedModel;
use crate::metrics::Metrics;

/// Requests waiting for the shadow, at most.
pub const QUEUE_REQUESTS: usize = 64;
/// Feature values waiting for the shadow, at most (rows × features: 8 MB of `f64`): bounds
/// the queue's memory whatever the batch size and the model's width. (Counting rows alone
/// let 64 requests of wide rows hold hundreds of MB.)
pub const QUEUE_VALUES: usize = 1_000_000;
/// The scoring thread's nice value: the served model's predictions come first.
#[cfg(target_os = "linux")]
const NICE: i32 = 10;

/// A request the served model answered, for the shadow to score.
struct Job {
    champion: Arc<ServedModel>,
    rows: Matrix,
    predictions: Vec<f64>,
}

/// How the current shadow compares, since it was loaded.
#[derive(Default)]
struct Tally {
    version: String,
    compared: u64,
    dropped: u64,
    errors: u64,
    rows: u64,
    abs_sum: f64,
    max: f64,
}

struct Inner {
    model: ArcSwapOption<ServedModel>,
    tally: Mutex<Tally>,
    /// Feature values queued (see [`QUEUE_VALUES`]).
    queued_values: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl Inner {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct Shadow {
    inner: Arc<Inner>,
    queue: SyncSender<Job>,
}

impl Shadow {
    /// No shadow loaded; the scoring thread waits for work.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let inner = Arc::new(Inner {
            model: ArcSwapOption::empty(),
            tally: Mutex::new(Tally::default()),
            queued_values: AtomicUsize::new(0),
            metrics,
        });
        let (queue, jobs) = sync_channel(QUEUE_REQUESTS);
        let worker = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("shadow-scorer".into())
            .spawn(move || score_until_closed(&worker, &jobs));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the shadow scoring thread; shadows are never scored");
        }
        Shadow { inner, queue }
    }

    pub fn current(&self) -> Option<Arc<ServedModel>> {
        self.inner.model.load_full()
    }

    /// Makes `model` the shadow (its comparison starts from zero); the old one's version.
    pub fn set(&self, model: Arc<ServedModel>) -> Option<String> {
        *self.inner.tally() = Tally {
            version: model.info.model_version.clone(),
            ..Tally::default()
        };
        let old = self.inner.model.swap(Some(model));
        old.map(|m| m.info.model_version.clone())
    }

    /// Unloads the shadow; the old one's version.
    pub fn clear(&self) -> Option<String> {
        let old = self.inner.model.swap(None);
        *self.inner.tally() = Tally::default();
        old.map(|m| m.info.model_version.clone())
    }

    /// Offers a request the served model answered. Without a shadow this costs nothing;
    /// with a full queue the request is dropped (counted), never waited for.
    pub fn offer(&self, champion: &Arc<ServedModel>, rows: Matrix, predictions: &[f64]) {
        let Some(shadow) = self.inner.model.load_full() else {
            return;
        };
        let version = &shadow.info.model_version;
        let n = values_of(&rows);
        let queued = self.inner.queued_values.fetch_add(n, Ordering::SeqCst);
        let job = Job {
            champion: champion.clone(),
            rows,
            predictions: predictions.to_vec(),
        };
        let refused = !admits(queued, n)
            || matches!(
                self.queue.try_send(job),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_))
            );
        if refused {
            self.inner.queued_values.fetch_sub(n, Ordering::SeqCst);
            let mut tally = self.inner.tally();
            if tally.version == *version {
                tally.dropped += 1;
            }
            self.inner.metrics.versions.count_shadow_dropped(version);
        }
    }

    /// `/model/info`'s `shadow`.
    pub fn info(&self) -> Option<ShadowInfo> {
        let model = self.current()?;
        let tally = self.inner.tally();
        let same = tally.version == model.info.model_version;
        let pick = |v: u64| if same { v } else { 0 };
        Some(ShadowInfo {
            version: model.info.model_version.clone(),
            digest: model.info.digest.clone(),
            loaded_at: model.info.loaded_at.clone(),
            compared: pick(tally.compared),
            dropped: pick(tally.dropped),
            errors: pick(tally.errors),
            mean_abs_diff: if same && tally.rows > 0 {
                tally.abs_sum / tally.rows as f64
            } else {
                0.0
            },
            max_abs_diff: if same { tally.max } else { 0.0 },
        })
    }
}

/// The feature values a request's rows hold (a row of no features still costs one).
fn values_of(rows: &Matrix) -> usize {
    rows.values().len().max(rows.rows())
}

/// Whether a job of `values` fits beside the `queued` ones.
fn admits(queued: usize, values: usize) -> bool {
    queued.saturating_add(values) <= QUEUE_VALUES
}

fn score_until_closed(inner: &Inner, jobs: &Receiver<Job>) {
    lower_priority();
    while let Ok(job) = jobs.recv() {
        inner
            .queued_values
            .fetch_sub(values_of(&job.rows), Ordering::SeqCst);
        if let Some(shadow) = inner.model.load_full() {
            score(inner, &shadow, &job);
        }
    }
}

/// Scores one request with the shadow and records how far it is from the served answer.
fn score(inner: &Inner, shadow: &ServedModel, job: &Job) {
    let version = &shadow.info.model_version;
    let comparable = shadow.info.feature_names == job.champion.info.feature_names;
    let diffs: Option<Vec<f64>> = comparable
        .then(|| shadow.predict(&job.rows))
        .filter(|p| p.len() == job.predictions.len() && p.iter().all(|v| v.is_finite()))
        .map(|p| {
            p.iter()
                .zip(&job.predictions)
                .map(|(s, c)| (s - c).abs())
                .collect()
        });
    let mut tally = inner.tally();
    let counted = tally.version == *version;
    match diffs {
        Some(diffs) => {
            if counted {
                tally.compared += 1;
                tally.rows += diffs.len() as u64;
                tally.abs_sum += diffs.iter().sum::<f64>();
                tally.max = diffs.iter().copied().fold(tally.max, f64::max);
            }
            drop(tally);
            inner.metrics.versions.observe_shadow(version, &diffs);
        }
        None => {
            if counted {
                tally.errors += 1;
            }
            drop(tally);
            inner.metrics.versions.count_shadow_error(version);
        }
    }
}

/// Lowers this thread's CPU priority (Linux applies `setpriority` to the calling thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes the scheduling priority of the calling thread; it
    // reads and writes no memory of ours.
    unsafe {
        if libc::setpriority(libc::PRIO_PROCESS, 0, NICE) != 0 {
            tracing::debug!("could not lower the shadow scoring thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_by_values_not_rows() {
        // 100 rows of a 2,000-feature model: 200,000 values; five fit, not six.
        let wide = Matrix::new(vec![0.0; 2_000 * 100], 2_000);
        assert_eq!(values_of(&wide), 200_000);
        assert!(admits(4 * 200_000, values_of(&wide)));
        assert!(!admits(5 * 200_000, values_of(&wide)));
        // Narrow rows: many more fit.
        let narrow = Matrix::new(vec![0.0; 8 * 100], 8);
        assert!(admits(QUEUE_VALUES - 800, values_of(&narrow)));
        assert!(!admits(usize::MAX, 1));
        assert_eq!(values_of(&Matrix::from_rows(vec![vec![1.0]], 1)), 1);
    }
}
