//! The GitOps health tests (`tests/gitops`, Go): kstatus and the Argo CD health check read
//! the ForecastModels the Rust end-to-end tests captured. Compiled before the run moves
//! into the cluster's network namespace (the Go module proxy is not reachable there), run
//! after the Rust tests wrote the fixtures.

use std::path::PathBuf;
use std::process::Command;

use crate::root;

fn module() -> PathBuf {
    root().join("tests").join("gitops")
}

fn binary() -> PathBuf {
    root().join("target").join("gitops").join("gitops.test")
}

/// Where the Rust tests write the captured objects (emptied before each run, so a lost
/// capture point fails instead of reading an old file).
pub fn fixtures_dir() -> anyhow::Result<PathBuf> {
    let dir = root().join("target").join("gitops-fixtures");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `go test -c`: the kstatus and Lua dependencies come from the Go module proxy here.
pub fn build() -> anyhow::Result<()> {
    eprintln!("xtask: building the GitOps health tests (Go)");
    crate::run(
        Command::new("go")
            .current_dir(module())
            .args(["test", "-c", "-o"])
            .arg(binary())
            .arg("."),
    )
}

/// Runs them on the fixtures in `fixtures`.
pub fn run(fixtures: &std::path::Path) -> anyhow::Result<()> {
    eprintln!("xtask: kstatus and the Argo CD health check on the captured ForecastModels");
    crate::run(
        Command::new(binary())
            .current_dir(module())
            .arg("-test.v")
            .env("FORECAST_GITOPS_FIXTURES", fixtures),
    )
}
