//! The project-local Python virtualenv (`.venv`) with MLflow and the test-only Python
//! packages, reused when its requirements have not changed.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use crate::{root, run};

pub const MLFLOW_VERSION: &str = "3.17.2";
const STAMP: &str = ".forecast-requirements";

/// Creates or updates `.venv` and returns its python.
pub fn ensure() -> anyhow::Result<PathBuf> {
    let venv = root().join(".venv");
    let python = venv.join("bin").join("python");
    let requirements = root().join("tests").join("python").join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let stamp = venv.join(STAMP);
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
    {
        return Ok(python);
    }
    if !python.is_file() {
        eprintln!("xtask: creating {}", venv.display());
        let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(Command::new(system_python).args(["-m", "venv"]).arg(&venv))?;
    }
    eprintln!(
        "xtask: installing {} (mlflow=={MLFLOW_VERSION} and test packages)",
        requirements.display()
    );
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    std::fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(python)
}
