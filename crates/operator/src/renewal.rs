//! Lease renewal on a thread of its own: its own single-threaded runtime and its own API
//! client (a kube `Client` drives its requests on the runtime that made it), so a runtime
//! busy with thousands of reconciles cannot delay a renewal past its deadline — only a
//! slow API server can cost the leadership.

use tokio::sync::oneshot;

use crate::leader::{LeaderElector, LeaseConfig};

/// How the renewal thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalEnded {
    /// A renewal failed, found another holder, or missed the renew deadline.
    Lost,
    /// It was asked to stop (the process is shutting down and releases the lease).
    Stopped,
}

/// The running renewal thread.
pub struct Renewal {
    ended: oneshot::Receiver<RenewalEnded>,
    stop: Option<oneshot::Sender<()>>,
    outcome: Option<RenewalEnded>,
}

impl Renewal {
    /// Starts renewing the lease this replica holds (after `LeaderElector::acquire`).
    pub fn start(api: kube::Config, lease: LeaseConfig) -> std::io::Result<Renewal> {
        let (ended_tx, ended) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("lease-renewal".into())
            .spawn(move || {
                let outcome = renew_until_lost_or_stopped(api, lease, stop_rx);
                let _ = ended_tx.send(outcome);
            })?;
        Ok(Renewal {
            ended,
            stop: Some(stop),
            outcome: None,
        })
    }

    /// Resolves when the lease is lost (or the thread ended for any reason but a stop).
    pub async fn lost(&mut self) {
        if self.outcome.is_none() {
            // A thread that ended without saying why cannot renew: the lease is lost.
            self.outcome = Some((&mut self.ended).await.unwrap_or(RenewalEnded::Lost));
        }
        if self.outcome == Some(RenewalEnded::Stopped) {
            std::future::pending::<()>().await;
        }
    }

    /// Stops renewing and waits until the thread renews no more (before the lease is
    /// released, so it is not taken back).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if self.outcome.is_none() {
            let _ = (&mut self.ended).await;
        }
    }
}

fn renew_until_lost_or_stopped(
    api: kube::Config,
    lease: LeaseConfig,
    stop: oneshot::Receiver<()>,
) -> RenewalEnded {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "leader election: no runtime for renewals");
            return RenewalEnded::Lost;
        }
    };
    runtime.block_on(async move {
        let client = match kube::Client::try_from(api) {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "leader election: no API client for renewals");
                return RenewalEnded::Lost;
            }
        };
        let elector = LeaderElector::new(client, lease);
        tokio::select! {
            () = elector.hold() => RenewalEnded::Lost,
            _ = stop => RenewalEnded::Stopped,
        }
    })
}
