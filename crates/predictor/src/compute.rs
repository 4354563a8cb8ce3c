//! Predictions off the HTTP workers when they are large (`Inline` says what is small): parsing a large body and walking the trees are CPU
//! work, so they run on the blocking pool, at most one per core at a time, under a
//! deadline (`PREDICTOR_PREDICT_TIMEOUT_MS`). `/health`, `/ready` and `/metrics` stay on
//! the async workers and answer while every core predicts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Bodies up to this many bytes are read on the HTTP worker that received them: parsing
/// a few KiB costs microseconds, less than handing the work to the compute pool and back
/// (which halved single-row throughput when every request paid it).
pub const INLINE_BODY_BYTES: usize = 16 * 1024;

/// Rows × trees up to which a request read on the HTTP worker is also predicted there:
/// 16,384 tree walks is ~0.25 ms of a worker (about 160 rows of a 100-tree forest), while
/// the hand-off to the pool and back costs ~30 µs (measured: 64 rows of a 100-tree forest
/// took 5.5 µs per row through the pool, 5.0 inline). Past it the rows go to the compute
/// pool under the deadline, so `/health` and small requests never wait behind big ones.
pub const INLINE_TREE_WALKS: usize = 16_384;

/// Where a request's work runs, decided from what is known before and after reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Read and predicted on the HTTP worker.
    Inline,
    /// Read on the HTTP worker, predicted on the compute pool.
    PredictOnPool,
    /// Read and predicted on the compute pool.
    Pool,
}

/// How small a request must be to be answered on the HTTP worker, with no deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inline {
    pub body_bytes: usize,
    pub tree_walks: usize,
}

impl Default for Inline {
    fn default() -> Self {
        Inline {
            body_bytes: INLINE_BODY_BYTES,
            tree_walks: INLINE_TREE_WALKS,
        }
    }
}

impl Inline {
    /// Nothing inline: every request on the pool, under the deadline.
    pub fn never() -> Self {
        Inline {
            body_bytes: 0,
            tree_walks: 0,
        }
    }

    /// Where a body of `body_bytes` is read: small ones inline, the rest on the pool.
    pub fn read_placement(&self, body_bytes: usize) -> Placement {
        if body_bytes > 0 && body_bytes <= self.body_bytes {
            Placement::Inline
        } else {
            Placement::Pool
        }
    }

    /// Where `rows` read inline are predicted, for a model of `trees` trees.
    pub fn predict_placement(&self, rows: usize, trees: usize) -> Placement {
        if rows.saturating_mul(trees.max(1)) <= self.tree_walks {
            Placement::Inline
        } else {
            Placement::PredictOnPool
        }
    }
}

/// Where and for how long prediction work may run.
#[derive(Debug, Clone)]
pub struct Compute {
    slots: Arc<Semaphore>,
    deadline: Duration,
    inline: Inline,
}

impl Compute {
    /// `parallel` computations at a time (at least one), each answered within `deadline`
    /// (queueing included).
    pub fn new(deadline: Duration, parallel: usize) -> Self {
        Compute {
            slots: Arc::new(Semaphore::new(parallel.max(1))),
            deadline,
            inline: Inline::default(),
        }
    }

    /// The same pool with other inline limits.
    pub fn with_inline(self, inline: Inline) -> Self {
        Compute { inline, ..self }
    }

    pub fn inline(&self) -> Inline {
        self.inline
    }

    /// One slot per available core.
    pub fn per_core(deadline: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Compute::new(deadline, cores)
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Runs `work` on the blocking pool once a slot is free. Past the deadline the caller
    /// gets `PredictTimeout`; work already started finishes in the background and keeps its
    /// slot until then, so abandoned work cannot pile up beyond one per core.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    {
        let slots = self.slots.clone();
        let attempt = async move {
            let slot = slots
                .acquire_owned()
                .await
                .map_err(|_| ApiError::Internal("the prediction pool is closed".into()))?;
            let handle = tokio::task::spawn_blocking(move || {
                let answer = work();
                drop(slot);
                answer
            });
            handle
                .await
                .map_err(|e| ApiError::Internal(format!("the prediction stopped: {e}")))?
        };
        tokio::time::timeout(self.deadline, attempt)
            .await
            .map_err(|_| ApiError::PredictTimeout(self.deadline))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_and_few_tree_walks_stay_on_the_worker() {
        let inline = Inline::default();
        assert_eq!(inline.read_placement(200), Placement::Inline);
        assert_eq!(inline.read_placement(INLINE_BODY_BYTES), Placement::Inline);
        assert_eq!(
            inline.read_placement(INLINE_BODY_BYTES + 1),
            Placement::Pool
        );
        assert_eq!(inline.predict_placement(1, 100), Placement::Inline);
        assert_eq!(inline.predict_placement(163, 100), Placement::Inline);
        assert_eq!(inline.predict_placement(164, 100), Placement::PredictOnPool);
        assert_eq!(inline.predict_placement(16_384, 0), Placement::Inline);
        assert_eq!(
            inline.predict_placement(usize::MAX, 2),
            Placement::PredictOnPool
        );
        // The documented limits: 16 KiB, and 16,384 tree walks.
        assert_eq!(inline.read_placement(16_384), Placement::Inline);
        assert_eq!(inline.read_placement(16_385), Placement::Pool);
        let never = Inline::never();
        assert_eq!(never.read_placement(0), Placement::Pool);
        assert_eq!(never.read_placement(1), Placement::Pool);
        assert_eq!(never.predict_placement(1, 1), Placement::PredictOnPool);
        let compute = Compute::new(Duration::from_millis(70), 1);
        assert_eq!(compute.inline(), Inline::default());
        assert_eq!(compute.deadline(), Duration::from_millis(70));
        assert_eq!(compute.with_inline(never).inline(), never);
    }

    #[tokio::test]
    async fn work_past_the_deadline_is_answered_as_a_timeout_and_keeps_its_slot() {
        let compute = Compute::new(Duration::from_millis(50), 1);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let slow = compute.run(move || {
            let _ = wait.recv();
            Ok(1)
        });
        assert!(matches!(slow.await, Err(ApiError::PredictTimeout(_))));
        // The abandoned work still holds the only slot: the next call queues and times out.
        assert!(matches!(
            compute.run(|| Ok(2)).await,
            Err(ApiError::PredictTimeout(_))
        ));
        release.send(()).unwrap();
        let answer = loop {
            match compute.run(|| Ok(3)).await {
                Ok(v) => break v,
                Err(ApiError::PredictTimeout(_)) => continue,
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(answer, 3);
        assert!(matches!(
            compute
                .run(|| -> Result<(), _> { Err(ApiError::BadRequest("no".into())) })
                .await,
            Err(ApiError::BadRequest(_))
        ));
    }
}
