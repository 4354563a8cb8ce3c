//! The kubelet: gives every pod a distinct loopback IP (127.0.0.0/8) and a Running
//! status. With the process runner, a pod whose image maps to a local binary runs it as a
//! real process: env resolved as the kubelet does (`value`, `configMapKeyRef`,
//! `secretKeyRef`, `fieldRef`), output kept for `kubectl logs`, readiness from the
//! container's HTTP `readinessProbe`, restarts (with `restartCount`) when it exits, and
//! a stop when the pod is deleted.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::sim::Sim;
use crate::store::{Subresource, WriteOptions, now_rfc3339};

const MANAGER: &str = "kubelet";

struct Container {
    namespace: String,
    name: String,
    child: Option<Child>,
    pid: Option<u32>,
    restart_count: i64,
    started_at: String,
    next_start: Instant,
    ready: bool,
    probe_failures: u32,
    waiting_reason: Option<String>,
}

pub struct Kubelet {
    sim: Arc<Sim>,
    containers: HashMap<String, Container>,
    /// IPs by pod uid; allocation never reuses an address within a run.
    ips: HashMap<String, String>,
    next_ip: u32,
}

fn ip_string(n: u32) -> String {
    // 127.1.0.2, 127.1.0.3, ... skipping .0, .1 and .255 in the last octet.
    let host = 2 + (n % 253);
    let n = n % (253 * 254 * 256);
    let rest = n / 253;
    format!("127.{}.{}.{}", 1 + (rest / 256) % 254, rest % 256, host)
}

impl Kubelet {
    pub fn new(sim: Arc<Sim>) -> Self {
        Kubelet {
            sim,
            containers: HashMap::new(),
            ips: HashMap::new(),
            // Each simulator starts at a random /24 of 127.0.0.0/8, so simulators running
            // side by side (parallel tests) do not hand out the same pod addresses.
            next_ip: {
                use rand::Rng;
                rand::rng().random_range(0..254 * 256u32) * 253
            },
        }
    }

    /// One pass over every pod.
    /// One pass: every pod (`dirty` None), or the changed pods plus those running a
    /// process (probes, exits).
    pub async fn sync(&mut self, dirty: Option<&std::collections::HashSet<String>>) {
        // Only the pods that changed, run a process, or are new here are cloned.
        let (pods, all_uids) = {
            let store = self.sim.store();
            let Some(rt) = store.resolve("", "v1", "pods").cloned() else {
                return;
            };
            let containers = &self.containers;
            let pods = store.select(&rt, |p| {
                let uid = p["metadata"]["uid"].as_str().unwrap_or_default();
                dirty.is_none_or(|d| d.contains(uid))
                    || containers.get(uid).is_none_or(|c| {
                        c.child.is_some() || c.waiting_reason.is_some() || c.restart_count > 0
                    })
            });
            (pods, store.uids(&rt))
        };
        let mut terminating = std::collections::HashSet::new();
        for pod in &pods {
            let uid = pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !pod["metadata"]["deletionTimestamp"].is_null() {
                terminating.insert(uid);
                continue;
            }
            self.sync_pod(&uid, pod).await;
        }
        let gone_or_going = |u: &String| !all_uids.contains(u) || terminating.contains(u);
        let gone: Vec<String> = self
            .containers
            .keys()
            .filter(|u| gone_or_going(u))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(c) = self.containers.remove(&uid) {
                stop(c).await;
            }
        }
        self.ips.retain(|u, _| !gone_or_going(u));
    }

    async fn sync_pod(&mut self, uid: &str, pod: &Value) {
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let ip = match self.ips.get(uid) {
            Some(ip) => ip.clone(),
            None => {
                let ip = pod["status"]["podIP"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        let ip = ip_string(self.next_ip);
                        self.next_ip += 1;
                        ip
                    });
                self.ips.insert(uid.to_owned(), ip.clone());
                ip
            }
        };
        let spec = &pod["spec"]["containers"][0];
        let image = spec["image"].as_str().unwrap_or_default();
        let binary = self.sim.binary_for_image(image);
        let container = self
            .containers
            .entry(uid.to_owned())
            .or_insert_with(|| Container {
                namespace: ns.clone(),
                name: name.clone(),
                child: None,
                pid: None,
                restart_count: 0,
                started_at: now_rfc3339(),
                next_start: Instant::now(),
                ready: false,
                probe_failures: 0,
                waiting_reason: None,
            });
        match binary {
            None => {
                // Simulated container: running and ready at once.
                container.ready = true;
            }
            Some(binary) => {
                // Exited? Restart with a growing back-off, as the kubelet does.
                if let Some(child) = container.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    tracing::info!(pod = %name, %status, "container exited; restarting");
                    container.child = None;
                    container.pid = None;
                    container.ready = false;
                    container.restart_count += 1;
                    let backoff =
                        Duration::from_millis(500 * (1 << container.restart_count.min(5)));
                    container.next_start = Instant::now() + backoff;
                }
                if container.child.is_none() && Instant::now() >= container.next_start {
                    match resolve_env(&self.sim, pod, spec, &ip) {
                        Ok(env) => match start_process(&self.sim, &ns, &name, &binary, spec, env) {
                            Ok(child) => {
                                container.pid = child.id();
                                container.child = Some(child);
                                container.started_at = now_rfc3339();
                                container.waiting_reason = None;
                                container.probe_failures = 0;
                            }
                            Err(e) => {
                                tracing::warn!(pod = %name, error = %e, "cannot start container");
                                container.waiting_reason = Some("RunContainerError".into());
                                container.next_start = Instant::now() + Duration::from_secs(2);
                            }
                        },
                        Err(reason) => {
                            container.waiting_reason =
                                Some(format!("CreateContainerConfigError: {reason}"));
                            container.next_start = Instant::now() + Duration::from_millis(500);
                        }
                    }
                }
                if container.child.is_some() {
                    container.ready = probe(&self.sim, spec, &ip, container).await;
                }
            }
        }
        let status = pod_status(pod, &ip, container);
        if pod["status"] != status {
            let mut updated = pod.clone();
            updated["status"] = status;
            let mut store = self.sim.store();
            if let Some(rt) = store.resolve("", "v1", "pods").cloned() {
                let opts = WriteOptions {
                    manager: MANAGER.into(),
                    ..WriteOptions::default()
                };
                let _ = store.write(&rt, &ns, &name, updated, Subresource::Status, &opts);
            }
        }
    }

    /// Stops every process (simulator shutdown).
    pub async fn stop_all(&mut self) {
        for (_, c) in self.containers.drain() {
            stop(c).await;
        }
    }
}

async fn stop(mut c: Container) {
    if let Some(mut child) = c.child.take() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        tracing::info!(pod = %c.name, namespace = %c.namespace, "container stopped");
    }
}

/// Readiness from the HTTP probe (ready at once without one); `failureThreshold`
/// consecutive failures make a ready container unready.
async fn probe(sim: &Sim, spec: &Value, ip: &str, c: &mut Container) -> bool {
    let probe = &spec["readinessProbe"]["httpGet"];
    if !probe.is_object() {
        return true;
    }
    let port = match &probe["port"] {
        Value::Number(n) => n.as_u64().unwrap_or(80),
        Value::String(name) => spec["ports"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name.as_str()))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or(80),
        _ => 80,
    };
    let path = probe["path"].as_str().unwrap_or("/");
    let url = format!("http://{ip}:{port}{path}");
    let ok = matches!(
        sim.http.get(&url).timeout(Duration::from_millis(500)).send().await,
        Ok(r) if r.status().is_success()
    );
    if ok {
        c.probe_failures = 0;
        true
    } else {
        c.probe_failures += 1;
        let threshold = spec["readinessProbe"]["failureThreshold"]
            .as_u64()
            .unwrap_or(3) as u32;
        c.ready && c.probe_failures < threshold
    }
}

fn pod_status(pod: &Value, ip: &str, c: &Container) -> Value {
    let ready = if c.ready { "True" } else { "False" };
    let spec = &pod["spec"]["containers"][0];
    let keep = |t: &str, s: &str| {
        pod["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|x| x["type"] == t && x["status"] == s))
            .map(|x| x["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(now_rfc3339()))
    };
    let condition = |t: &str, s: &str| json!({"type": t, "status": s, "lastProbeTime": null, "lastTransitionTime": keep(t, s)});
    let state = match (&c.waiting_reason, c.pid) {
        (Some(reason), _) => json!({"waiting": {"reason": reason}}),
        (None, Some(_)) | (None, None) => json!({"running": {"startedAt": c.started_at}}),
    };
    let container_id = match c.pid {
        Some(pid) => format!("kube-sim://{pid}"),
        None => "kube-sim://simulated".to_owned(),
    };
    let start_time = pod["status"]["startTime"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(now_rfc3339);
    json!({
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": start_time,
        "conditions": [
            condition("PodScheduled", "True"),
            condition("Initialized", "True"),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "containerStatuses": [{
            "name": spec["name"],
            "image": spec["image"],
            "imageID": "",
            "containerID": container_id,
            "ready": c.ready,
            "started": c.pid.is_some() || c.waiting_reason.is_none(),
            "restartCount": c.restart_count,
            "state": state,
        }],
    })
}

/// The container's environment, resolved at start as the kubelet resolves it.
fn resolve_env(
    sim: &Sim,
    pod: &Value,
    spec: &Value,
    ip: &str,
) -> Result<Vec<(String, String)>, String> {
    let store = sim.store();
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let lookup = |plural: &str, name: &str, key: &str| -> Option<String> {
        let rt = store.resolve("", "v1", plural)?;
        let o = store.get(rt, ns, name).ok()?;
        if plural == "secrets" {
            if let Some(v) = o["stringData"][key].as_str() {
                return Some(v.to_owned());
            }
            let raw = o["data"][key].as_str()?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
            String::from_utf8(bytes).ok()
        } else {
            o["data"][key].as_str().map(str::to_owned)
        }
    };
    let mut env = Vec::new();
    for source in spec["envFrom"].as_array().into_iter().flatten() {
        let prefix = source["prefix"].as_str().unwrap_or_default();
        for (plural, reference) in [
            ("configmaps", &source["configMapRef"]),
            ("secrets", &source["secretRef"]),
        ] {
            let Some(name) = reference["name"].as_str() else {
                continue;
            };
            let optional = reference["optional"] == true;
            let Some(rt) = store.resolve("", "v1", plural) else {
                continue;
            };
            match store.get(rt, ns, name) {
                Ok(o) => {
                    for key in o["data"]
                        .as_object()
                        .map(|m| m.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default()
                    {
                        if let Some(v) = lookup(plural, name, &key) {
                            env.push((format!("{prefix}{key}"), v));
                        }
                    }
                }
                Err(_) if optional => {}
                Err(_) => return Err(format!("{plural} \"{name}\" not found")),
            }
        }
    }
    for var in spec["env"].as_array().into_iter().flatten() {
        let Some(name) = var["name"].as_str() else {
            continue;
        };
        if let Some(v) = var.get("value").and_then(Value::as_str) {
            env.push((name.to_owned(), expand(v, &env)));
            continue;
        }
        let from = &var["valueFrom"];
        let value = if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            Some(match path {
                "metadata.name" => pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                "metadata.namespace" => ns.to_owned(),
                "metadata.uid" => pod["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                "status.podIP" => ip.to_owned(),
                "status.hostIP" => "127.0.0.1".to_owned(),
                "spec.nodeName" => "kube-sim".to_owned(),
                "spec.serviceAccountName" => pod["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap_or("default")
                    .to_owned(),
                other => match other
                    .strip_prefix("metadata.labels['")
                    .and_then(|r| r.strip_suffix("']"))
                {
                    Some(label) => pod["metadata"]["labels"][label]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    None => return Err(format!("unsupported fieldRef {other}")),
                },
            })
        } else if from["configMapKeyRef"].is_object() || from["secretKeyRef"].is_object() {
            let (plural, r) = if from["configMapKeyRef"].is_object() {
                ("configmaps", &from["configMapKeyRef"])
            } else {
                ("secrets", &from["secretKeyRef"])
            };
            let (obj, key) = (
                r["name"].as_str().unwrap_or_default(),
                r["key"].as_str().unwrap_or_default(),
            );
            match lookup(plural, obj, key) {
                Some(v) => Some(v),
                None if r["optional"] == true => None,
                None => return Err(format!("couldn't find key {key} in {plural} {ns}/{obj}")),
            }
        } else {
            None
        };
        if let Some(v) = value {
            env.push((name.to_owned(), v));
        }
    }
    Ok(env)
}

/// `$(VAR)` references to variables defined earlier, as Kubernetes expands them.
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = value.to_owned();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

fn start_process(
    sim: &Sim,
    ns: &str,
    name: &str,
    binary: &std::path::Path,
    spec: &Value,
    env: Vec<(String, String)>,
) -> std::io::Result<Child> {
    let dir = sim.workdir.join("pods").join(format!("{ns}_{name}"));
    std::fs::create_dir_all(&dir)?;
    let log_path = dir.join("container.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    sim.set_pod_log(ns, name, log_path);
    let args: Vec<String> = spec["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(|v| expand(v, &env)))
                .collect()
        })
        .unwrap_or_default();
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &dir)
        .env("HOSTNAME", name)
        .envs(env)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    tracing::info!(pod = %name, namespace = %ns, pid = ?child.id(), binary = %binary.display(), "container started");
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ips_are_distinct_loopback_addresses() {
        let ips: std::collections::HashSet<String> = (0..2000).map(ip_string).collect();
        assert_eq!(ips.len(), 2000);
        assert!(
            ips.iter()
                .all(|ip| ip.starts_with("127.") && !ip.ends_with(".255") && !ip.ends_with(".0"))
        );
        assert_eq!(expand("a-$(X)-b", &[("X".into(), "1".into())]), "a-1-b");
    }
}
