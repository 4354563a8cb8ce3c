//! The network namespace the cluster lives in: only a loopback device, with 127.0.0.1 for
//! the control plane and all of 10.244.0.0/16 routed locally (the node's and the pods'
//! addresses; the API server refuses loopback addresses as endpoints). Nothing outside the
//! namespace can reach these addresses, and nothing inside can reach anything else.

use std::os::fd::AsRawFd;
use std::process::Command;

use anyhow::{Context, bail};

use crate::run;

/// The node's address; pods get addresses after it.
pub const NODE_IP: &str = "10.244.0.1";
pub const POD_NETWORK: &str = "10.244.0.0/16";
pub const FIRST_POD_IP: &str = "10.244.1.2";

pub fn exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

pub fn create(name: &str) -> anyhow::Result<()> {
    if exists(name) {
        delete(name);
    }
    run(Command::new("ip").args(["netns", "add", name]))
        .context("creating a network namespace needs root and iproute2 (`ip`)")?;
    let inside = |args: &[&str]| {
        run(Command::new("ip")
            .args(["netns", "exec", name, "ip"])
            .args(args))
    };
    inside(&["link", "set", "lo", "up"])?;
    inside(&["route", "add", "local", POD_NETWORK, "dev", "lo"])?;
    Ok(())
}

/// Moves the calling thread (and every process or thread it starts from now on) into
/// the namespace.
pub fn enter(name: &str) -> anyhow::Result<()> {
    let path = format!("/run/netns/{name}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns on a descriptor we own; it changes only this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns({path}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Every process still inside the namespace.
pub fn pids(name: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn delete(name: &str) {
    // This process may be inside (it entered to start the cluster): never itself.
    let me = std::process::id();
    for pid in pids(name).into_iter().filter(|p| *p != me) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
    let _ = Command::new("ip").args(["netns", "del", name]).status();
}
