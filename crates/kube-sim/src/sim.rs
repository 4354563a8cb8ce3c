//! The simulator's shared state: the store, the process runner's image map, pod logs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use crate::store::Store;

pub struct Sim {
    store: Mutex<Store>,
    /// `host:port` the API server listens on.
    pub address: String,
    /// Container image → local binary, for pods that run as real processes.
    pub images: HashMap<String, PathBuf>,
    /// Where pods' working directories and logs go.
    pub workdir: PathBuf,
    pub http: reqwest::Client,
}

impl Sim {
    pub fn new(
        store: Store,
        address: String,
        images: HashMap<String, PathBuf>,
        workdir: PathBuf,
    ) -> Self {
        crate::install_crypto_provider();
        Sim {
            store: Mutex::new(store),
            address,
            images,
            workdir,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .connect_timeout(std::time::Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The store, locked. Hold it briefly and never across an `.await`.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The local binary for a container image: matched exactly, or by its name without
    /// registry and tag (`ghcr.io/x/forecast-predictor:1.2` → `forecast-predictor`).
    pub fn binary_for_image(&self, image: &str) -> Option<PathBuf> {
        binary_for_image(&self.images, image)
    }

    /// The pod's container output (empty for simulated pods and before the first start),
    /// `None` for unknown pods. The node agent writes it under
    /// `workdir/pods/NAMESPACE_NAME_UID/container.log`.
    pub fn pod_log(&self, ns: &str, name: &str) -> Option<String> {
        let uid = {
            let store = self.store();
            let pods = store.resolve("", "v1", "pods")?.clone();
            let pod = store.get(&pods, ns, name).ok()?;
            pod["metadata"]["uid"].as_str()?.to_owned()
        };
        let path = crate::node_agent::container_log(&self.workdir, ns, name, &uid);
        Some(std::fs::read_to_string(path).unwrap_or_default())
    }
}

/// `registry:5000/team/forecast-predictor:1.2@sha256:..` → `forecast-predictor`.
/// The local binary for a container image in `images`: matched exactly, or by its name
/// without registry, tag and digest. The simulator's kubelet and the node agent share it.
pub fn binary_for_image(
    images: &std::collections::HashMap<String, PathBuf>,
    image: &str,
) -> Option<PathBuf> {
    if let Some(p) = images.get(image) {
        return Some(p.clone());
    }
    let short = image_short_name(image);
    images
        .iter()
        .find(|(k, _)| image_short_name(k) == short)
        .map(|(_, p)| p.clone())
}

/// `IMAGE=BINARY` arguments (`--run`, repeatable) as an image → binary map; each binary
/// must be a file.
pub fn parse_image_mappings(
    specs: &[String],
) -> anyhow::Result<std::collections::HashMap<String, PathBuf>> {
    let mut out = std::collections::HashMap::new();
    for s in specs {
        let Some((image, binary)) = s.split_once('=') else {
            anyhow::bail!("--run {s:?}: expected IMAGE=BINARY");
        };
        let path = PathBuf::from(binary);
        if !path.is_file() {
            anyhow::bail!("--run {s:?}: {binary} is not a file");
        }
        out.insert(image.to_owned(), path.canonicalize().unwrap_or(path));
    }
    Ok(out)
}

pub fn image_short_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_match_by_short_name() {
        assert_eq!(
            image_short_name("ghcr.io/acme/forecast-predictor:1.2"),
            "forecast-predictor"
        );
        assert_eq!(image_short_name("localhost:5000/p@sha256:abc"), "p");
        assert_eq!(image_short_name("p"), "p");
    }
}
