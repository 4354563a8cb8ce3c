//! The control plane built from source: kube-apiserver, kube-controller-manager and
//! kube-scheduler from `k8s.io/kubernetes` (module `tests/control-plane`) and etcd from
//! `go.etcd.io/etcd/server/v3` (module `tests/control-plane/etcd`), with the version
//! ldflags a release build sets. Cached under `target/control-plane/<digest>/`, the digest
//! taken over both modules' go.mod and go.sum, so a pin change builds anew and nothing else
//! does; Go's own build and module caches make a rebuild incremental.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::{root, run};

/// The Kubernetes release the control plane is built from (matches k8s-openapi's `v1_37`).
pub const KUBE_VERSION: &str = "v1.37.2";

pub const KUBE_BINARIES: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

fn module_dir() -> PathBuf {
    root().join("tests").join("control-plane")
}

/// The digest the cache is keyed by.
fn digest() -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(KUBE_VERSION);
    for dir in [module_dir(), module_dir().join("etcd")] {
        for file in ["go.mod", "go.sum"] {
            let path = dir.join(file);
            hasher.update(
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            );
        }
    }
    Ok(hex::encode(hasher.finalize())[..16].to_owned())
}

fn version_ldflags() -> String {
    let minor = KUBE_VERSION
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .unwrap_or("0");
    let mut flags = String::from("-s -w");
    for package in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        for (name, value) in [
            ("gitVersion", KUBE_VERSION),
            ("gitMajor", "1"),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
            ("gitCommit", "0000000000000000000000000000000000000000"),
            ("buildDate", "1970-01-01T00:00:00Z"),
        ] {
            flags.push_str(&format!(" -X {package}.{name}={value}"));
        }
    }
    flags
}

fn go(dir: &Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(dir)
        // The module's own pins; never a newer toolchain fetched behind our back.
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0");
    cmd
}

/// The directory holding the four binaries, built on first use.
pub fn ensure() -> anyhow::Result<PathBuf> {
    let bin = root().join("target").join("control-plane").join(digest()?);
    let all = KUBE_BINARIES.iter().chain(std::iter::once(&"etcd"));
    if all.clone().all(|b| bin.join(b).is_file()) {
        return Ok(bin);
    }
    let tmp = bin.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let started = Instant::now();
    eprintln!(
        "xtask: building the control plane {KUBE_VERSION} and etcd from source (Go; a cold build takes minutes)"
    );
    let mut out_dir = tmp.clone().into_os_string();
    out_dir.push("/");
    let mut kube = go(&module_dir());
    kube.args(["build", "-trimpath", "-ldflags", &version_ldflags(), "-o"])
        .arg(&out_dir);
    for b in KUBE_BINARIES {
        kube.arg(format!("k8s.io/kubernetes/cmd/{b}"));
    }
    run(&mut kube)?;
    run(go(&module_dir().join("etcd"))
        .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
        .arg(tmp.join("etcd"))
        .arg("."))?;
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::rename(&tmp, &bin)?;
    eprintln!(
        "xtask: control plane built in {:.0} s into {}",
        started.elapsed().as_secs_f64(),
        bin.display()
    );
    Ok(bin)
}
