//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder reconciles, so
//! two replicas never roll at once. Writes carry the Lease's resourceVersion, so two
//! candidates cannot both win. A holder steps down at its first renewal that fails or does
//! not finish within the renew deadline (shorter than the lease), so it has stopped acting
//! before any other replica may take the lease. The holder advertises its webhook address
//! on the Lease, so a standby can relay webhook deliveries to it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    /// A renewal not done this long after the last one ends leadership (< `duration`).
    pub renew_deadline: Duration,
    /// `host:port` of this replica's webhook listener, written on the Lease while it leads.
    pub webhook_address: Option<String>,
}

/// Whether this replica may act: set while it leads, cleared at the first failed renewal.
/// Reconciles check it before they start and a rollout before each batch of pods.
#[derive(Debug, Clone)]
pub struct Acting(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Default for Acting {
    fn default() -> Self {
        Acting(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
            true,
        )))
    }
}

impl Acting {
    pub fn allowed(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The Lease annotation that carries the leader's webhook address.
pub const WEBHOOK_ADDRESS_ANNOTATION: &str = "forecast.dev/webhook-address";

impl LeaseConfig {
    /// The renew deadline by default: two thirds of the lease (10 s of 15 s).
    pub fn default_renew_deadline(duration: Duration) -> Duration {
        duration * 2 / 3
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The Lease as the election loop last read it: a standby answers "who leads, and
    /// where" from it, never with an API call per webhook delivery.
    last_seen: std::sync::Mutex<Option<Lease>>,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// The webhook address another replica's unexpired lease advertises (pure). The
/// annotation is written by whoever can write the Lease: only a `host:port` socket
/// address is taken, never a URL.
pub fn advertised_address(
    lease: &Lease,
    me: &str,
    now: &MicroTime,
) -> Option<std::net::SocketAddr> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty()
        || holder == me
        || expired(spec.renew_time.as_ref(), spec.lease_duration_seconds, now)
    {
        return None;
    }
    lease
        .metadata
        .annotations
        .as_ref()?
        .get(WEBHOOK_ADDRESS_ANNOTATION)?
        .parse()
        .ok()
}

/// Whether a lease held by someone else has expired (pure).
pub fn expired(
    renew_time: Option<&MicroTime>,
    duration_seconds: Option<i32>,
    now: &MicroTime,
) -> bool {
    match (renew_time, duration_seconds) {
        (Some(r), Some(d)) => {
            let deadline = r.0 + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(d));
            deadline < now.0
        }
        _ => true,
    }
}

impl LeaderElector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            last_seen: std::sync::Mutex::new(None),
        }
    }

    fn spec(&self, transitions: i32, acquire: MicroTime) -> serde_json::Value {
        json!({
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": self.config.duration.as_secs(),
            "acquireTime": acquire,
            "renewTime": now(),
            "leaseTransitions": transitions,
        })
    }

    fn annotations(&self) -> serde_json::Value {
        match &self.config.webhook_address {
            Some(a) => json!({ WEBHOOK_ADDRESS_ANNOTATION: a }),
            None => json!({}),
        }
    }

    /// The webhook address the current leader advertises, when another replica holds an
    /// unexpired lease, as the election loop last read the Lease (no API call).
    pub fn leader_webhook_address(&self) -> Option<std::net::SocketAddr> {
        let lease = self.last_seen.lock().ok()?.clone()?;
        advertised_address(&lease, &self.config.identity, &now())
    }

    fn remember(&self, lease: Option<&Lease>) {
        if let Ok(mut seen) = self.last_seen.lock() {
            *seen = lease.cloned();
        }
    }

    /// One attempt to take or keep the lease; Ok(true) when this replica holds it.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let me = &self.config.identity;
        let lease = self.api.get_opt(&self.config.name).await?;
        self.remember(lease.as_ref());
        match lease {
            None => {
                let lease: Lease = serde_json::from_value(json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.config.name, "namespace": self.config.namespace,
                                 "annotations": self.annotations()},
                    "spec": self.spec(0, now()),
                }))
                .map_err(kube::Error::SerdeError)?;
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                let mine = holder == *me;
                let free = holder.is_empty()
                    || expired(
                        spec.renew_time.as_ref(),
                        spec.lease_duration_seconds,
                        &now(),
                    );
                if !mine && !free {
                    return Ok(false);
                }
                let transitions = spec.lease_transitions.unwrap_or(0) + if mine { 0 } else { 1 };
                let acquire = if mine {
                    spec.acquire_time.clone().unwrap_or_else(now)
                } else {
                    now()
                };
                lease.spec = Some(
                    serde_json::from_value(self.spec(transitions, acquire))
                        .map_err(kube::Error::SerdeError)?,
                );
                let annotations = lease
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default);
                match &self.config.webhook_address {
                    Some(a) => annotations.insert(WEBHOOK_ADDRESS_ANNOTATION.into(), a.clone()),
                    None => annotations.remove(WEBHOOK_ADDRESS_ANNOTATION),
                };
                // replace carries metadata.resourceVersion: a concurrent winner makes this 409.
                match self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Blocks until this replica holds the lease.
    pub async fn acquire(&self) {
        let retry = (self.config.duration / 3).max(Duration::from_millis(200));
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: cannot read or write the lease")
                }
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews every third of the renew deadline; returns at the first renewal that fails,
    /// finds another holder, or does not complete before the renew deadline (counted from
    /// the last success). Another replica may take the lease only a full lease duration
    /// after that last success, so the caller has `duration - renew_deadline` to stop.
    pub async fn hold(&self) {
        let every = (self.config.renew_deadline / 3).max(Duration::from_millis(200));
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let left = self.config.renew_deadline.saturating_sub(last_ok.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => last_ok = tokio::time::Instant::now(),
                Ok(Ok(false)) => {
                    tracing::error!("leader election: another replica holds the lease");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "leader election: renewal failed; stepping down");
                    return;
                }
                Err(_) => {
                    tracing::error!(
                        deadline = ?self.config.renew_deadline,
                        "leader election: no renewal within the renew deadline; stepping down"
                    );
                    return;
                }
            }
        }
    }

    /// Gives the lease up so another replica can take over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await {
            let holds = lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.config.identity.as_str());
            if holds {
                if let Some(spec) = lease.spec.as_mut() {
                    spec.holder_identity = None;
                }
                let _ = self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration_from_the_last_renewal() {
        let t = |s: i64| {
            MicroTime(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + s).unwrap())
        };
        assert!(!expired(Some(&t(0)), Some(15), &t(10)));
        assert!(expired(Some(&t(0)), Some(15), &t(16)));
        assert!(expired(None, Some(15), &t(0)));
    }

    #[test]
    fn only_a_socket_address_on_another_holders_live_lease_is_a_relay_target() {
        let t = |s: i64| {
            MicroTime(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + s).unwrap())
        };
        let lease = |holder: &str, address: &str| -> Lease {
            serde_json::from_value(json!({
                "metadata": {"name": "l", "annotations": {WEBHOOK_ADDRESS_ANNOTATION: address}},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                         "renewTime": t(0)}
            }))
            .unwrap()
        };
        assert_eq!(
            advertised_address(&lease("b", "10.244.1.7:8443"), "a", &t(5)),
            Some("10.244.1.7:8443".parse().unwrap())
        );
        // Not a URL, a path, a user-info trick or a host name.
        for hostile in [
            "evil.example:80",
            "10.0.0.1:80/steal?x=",
            "user@10.0.0.1:80",
            "http://10.0.0.1:80",
            "10.0.0.1",
        ] {
            assert_eq!(
                advertised_address(&lease("b", hostile), "a", &t(5)),
                None,
                "{hostile}"
            );
        }
        // Mine, or expired: nobody to relay to.
        assert_eq!(
            advertised_address(&lease("a", "10.0.0.1:80"), "a", &t(5)),
            None
        );
        assert_eq!(
            advertised_address(&lease("b", "10.0.0.1:80"), "a", &t(60)),
            None
        );
    }
}
