//! A pod's container as a local process: started with the resolved environment, probed,
//! restarted per `restartPolicy` with the kubelet's growing back-off, and stopped with
//! SIGTERM, the grace period, then SIGKILL.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Client, ResourceExt};
use tokio::process::{Child, Command};

use super::env::{expand, resolve_env};
use super::probe::{ProbeState, Verdict};
use super::{NodeAgentConfig, UnknownImages};

/// Why the container is not running (the `waiting` state's reason and message).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// How the last run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: String,
    pub finished_at: Time,
}

pub struct Container {
    pub ip: Ipv4Addr,
    /// The local binary for the pod's image; `None`: the image cannot be "pulled"
    /// (or the container is simulated).
    pub binary: Option<PathBuf>,
    /// A simulated container: running and ready, no process.
    pub simulated: bool,
    child: Option<Child>,
    pub pid: Option<u32>,
    pub restart_count: i32,
    pub started_at: Option<Time>,
    pub pod_started_at: Time,
    next_start: Instant,
    pub ready: bool,
    pub waiting: Option<Waiting>,
    pub last_terminated: Option<Terminated>,
    /// The pod is done (restartPolicy Never/OnFailure and the container ended).
    pub finished: Option<Terminated>,
    readiness: ProbeState,
    liveness: ProbeState,
    log: PathBuf,
    pub last_status: Option<serde_json::Value>,
}

impl Container {
    pub fn new(pod: &Pod, ip: Ipv4Addr, config: &NodeAgentConfig) -> Self {
        let spec = pod.spec.as_ref().and_then(|s| s.containers.first());
        let image = spec.and_then(|c| c.image.as_deref()).unwrap_or_default();
        let binary = crate::sim::binary_for_image(&config.images, image);
        let simulated = binary.is_none() && config.unknown_images == UnknownImages::Simulated;
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let waiting = match &binary {
            _ if simulated => None,
            Some(_) => Some(Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            }),
            None => Some(Waiting {
                reason: "ErrImagePull".into(),
                message: format!("image \"{image}\" is not known to this node agent"),
            }),
        };
        let log = super::container_log(
            &config.workdir,
            &pod.namespace().unwrap_or_default(),
            &pod.name_any(),
            &pod.uid().unwrap_or_default(),
        );
        Container {
            ip,
            binary,
            simulated,
            child: None,
            pid: None,
            restart_count: 0,
            started_at: simulated.then(|| now.clone()),
            pod_started_at: now,
            next_start: Instant::now(),
            ready: simulated,
            waiting,
            last_terminated: None,
            finished: None,
            readiness: ProbeState::default(),
            liveness: ProbeState::default(),
            log,
            last_status: None,
        }
    }

    /// One pass: notice an exit, (re)start when due, probe.
    pub async fn step(&mut self, client: &Client, pod: &Pod, config: &NodeAgentConfig) {
        let Some(binary) = self.binary.clone() else {
            return;
        };
        if self.finished.is_some() {
            return;
        }
        let Some(spec) = pod.spec.as_ref().and_then(|s| s.containers.first()) else {
            return;
        };
        let restart_policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always");
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let exit_code = status.code().unwrap_or(137);
            tracing::info!(pod = %pod.name_any(), %status, "container exited");
            let ended = Terminated {
                exit_code,
                reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
                finished_at: Time(k8s_openapi::jiff::Timestamp::now()),
            };
            self.child = None;
            self.pid = None;
            self.ready = false;
            self.readiness = ProbeState::default();
            self.liveness = ProbeState::default();
            let restart = match restart_policy {
                "Never" => false,
                "OnFailure" => exit_code != 0,
                _ => true,
            };
            if restart {
                self.restart_count += 1;
                let backoff = Duration::from_millis(500 * (1 << self.restart_count.min(5)));
                self.next_start = Instant::now() + backoff;
                self.waiting = Some(Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!("back-off {backoff:?} restarting failed container"),
                });
                self.last_terminated = Some(ended);
            } else {
                self.finished = Some(ended);
                return;
            }
        }
        if self.child.is_none() && Instant::now() >= self.next_start {
            match resolve_env(client, pod, spec, self.ip, config.node_ip).await {
                Ok(env) => match self.start(&binary, spec, env, &pod.name_any()) {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(pod = %pod.name_any(), error = %e, "cannot start container");
                        self.waiting = Some(Waiting {
                            reason: "RunContainerError".into(),
                            message: e.to_string(),
                        });
                        self.next_start = Instant::now() + Duration::from_secs(2);
                    }
                },
                Err(message) => {
                    self.waiting = Some(Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message,
                    });
                    self.next_start = Instant::now() + Duration::from_millis(500);
                }
            }
        }
        if self.child.is_some() {
            let started = self.started_instant();
            match self
                .liveness
                .check(spec.liveness_probe.as_ref(), spec, self.ip, started)
                .await
            {
                Verdict::Failed => {
                    tracing::info!(pod = %pod.name_any(), "liveness probe failed; killing the container");
                    if let Some(child) = self.child.as_mut() {
                        let _ = child.start_kill();
                    }
                }
                Verdict::Passed | Verdict::Pending => {}
            }
            self.ready = match self
                .readiness
                .check(spec.readiness_probe.as_ref(), spec, self.ip, started)
                .await
            {
                Verdict::Passed => true,
                Verdict::Failed => false,
                Verdict::Pending => self.ready,
            };
        }
    }

    fn started_instant(&self) -> Instant {
        self.readiness.started.unwrap_or_else(Instant::now)
    }

    fn start(
        &mut self,
        binary: &std::path::Path,
        spec: &k8s_openapi::api::core::v1::Container,
        env: Vec<(String, String)>,
        pod_name: &str,
    ) -> std::io::Result<()> {
        let dir = self
            .log
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let args: Vec<String> = spec
            .args
            .iter()
            .flatten()
            .map(|a| expand(a, &env))
            .collect();
        let child = Command::new(binary)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &dir)
            .env("HOSTNAME", pod_name)
            .envs(env)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        tracing::info!(pod = %pod_name, pid = ?child.id(), ip = %self.ip, binary = %binary.display(), "container started");
        self.pid = child.id();
        self.child = Some(child);
        self.started_at = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        self.waiting = None;
        let now = Instant::now();
        self.readiness = ProbeState::started_at(now);
        self.liveness = ProbeState::started_at(now);
        Ok(())
    }

    /// SIGTERM, up to `grace` for the process to end, then SIGKILL.
    pub async fn stop(mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}
