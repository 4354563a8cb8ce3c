//! The real browser the page tests drive: Debian's `chromium` and `chromium-driver`,
//! installed with apt when missing (the tests run as root on these machines; apt's
//! registry is one they reach).

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::run;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromium and chromedriver, installed on first use.
pub fn ensure() -> anyhow::Result<()> {
    if !(Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file()) {
        eprintln!("xtask: installing chromium and chromium-driver (apt) for the page tests");
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "chromium",
                "chromium-driver",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .context("installing chromium and chromium-driver")?;
    }
    for path in [CHROMIUM, CHROMEDRIVER] {
        anyhow::ensure!(
            Path::new(path).is_file(),
            "{path} is missing after apt-get install"
        );
    }
    Ok(())
}
