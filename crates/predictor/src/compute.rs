//! Predictions off the HTTP workers: parsing a large body and walking the trees are CPU
//! work, so they run on the blocking pool, at most one per core at a time, under a
//! deadline (`PREDICTOR_PREDICT_TIMEOUT_MS`). `/health`, `/ready` and `/metrics` stay on
//! the async workers and answer while every core predicts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Where and for how long prediction work may run.
#[derive(Debug, Clone)]
pub struct Compute {
    slots: Arc<Semaphore>,
    deadline: Duration,
}

impl Compute {
    /// `parallel` computations at a time (at least one), each answered within `deadline`
    /// (queueing included).
    pub fn new(deadline: Duration, parallel: usize) -> Self {
        Compute {
            slots: Arc::new(Semaphore::new(parallel.max(1))),
            deadline,
        }
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
