//! Artifact resolution, listing, download and upload through the tracking server's
//! artifact proxy (`--serve-artifacts`).

use std::path::{Component, Path, PathBuf};

use reqwest::Method;
use serde::Deserialize;

use crate::client::MlflowClient;
use crate::error::MlflowError;
use crate::types::FileInfo;

/// Refuse to download more than this many files for one model.
const MAX_FILES: usize = 10_000;
/// Deepest directory nesting walked in one model version.
const MAX_DEPTH: usize = 16;
/// Nesting limit when resolving `models:/` and `runs:/` indirections.
const MAX_INDIRECTIONS: usize = 4;

const ARTIFACTS_SCHEME: &str = "mlflow-artifacts:";

/// A model version's files, downloaded.
#[derive(Debug, Clone)]
pub struct DownloadedArtifacts {
    pub dir: PathBuf,
    /// The `mlflow-artifacts:/` location they came from.
    pub location: String,
    pub files: usize,
    pub bytes: u64,
}

impl MlflowClient {
    /// Resolves a source URI (`runs:/<run>/<path>`, `models:/m-<id>`,
    /// `models:/<name>/<version>`, `mlflow-artifacts:/<path>`) to the artifact path under
    /// the server's artifact proxy.
    pub async fn resolve_artifact_path(&self, source: &str) -> Result<String, MlflowError> {
        let mut uri = source.to_owned();
        for _ in 0..MAX_INDIRECTIONS {
            if let Some(rest) = uri.strip_prefix(ARTIFACTS_SCHEME) {
                // mlflow-artifacts:/path or mlflow-artifacts://host:port/path
                let path = match rest.strip_prefix("//") {
                    Some(with_host) => with_host.split_once('/').map(|(_, p)| p).unwrap_or(""),
                    None => rest.trim_start_matches('/'),
                };
                return Ok(path.trim_end_matches('/').to_owned());
            } else if let Some(rest) = uri.strip_prefix("runs:/") {
                let rest = rest.trim_start_matches('/');
                let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
                let run = self.get_run(run_id).await?;
                uri = join_uri(&run.info.artifact_uri, path);
            } else if let Some(rest) = uri.strip_prefix("models:/") {
                let rest = rest.trim_start_matches('/');
                if rest.starts_with("m-") && !rest.contains('/') {
                    uri = self.logged_model_artifact_uri(rest).await?;
                } else if let Some((name, version)) = rest.split_once('/') {
                    let v = self.get_model_version(name, version).await?;
                    uri = v.source.ok_or_else(|| MlflowError::Decode {
                        what: "model-versions/get".into(),
                        message: format!("version {version} of {name} has no source"),
                    })?;
                } else {
                    return Err(MlflowError::UnsupportedLocation {
                        uri: source.to_owned(),
                        reason: "expected models:/m-<id> or models:/<name>/<version>".into(),
                    });
                }
            } else {
                return Err(MlflowError::UnsupportedLocation {
                    uri: uri.clone(),
                    reason: "only artifacts served by the tracking server \
                             (mlflow-artifacts:/, runs:/, models:/) can be fetched; \
                             start the server with --serve-artifacts"
                        .into(),
                });
            }
        }
        Err(MlflowError::UnsupportedLocation {
            uri: source.to_owned(),
            reason: "too many indirections".into(),
        })
    }

    async fn logged_model_artifact_uri(&self, model_id: &str) -> Result<String, MlflowError> {
        #[derive(Deserialize)]
        struct Info {
            artifact_uri: String,
        }
        #[derive(Deserialize)]
        struct Model {
            info: Info,
        }
        #[derive(Deserialize)]
        struct R {
            model: Model,
        }
        let r: R = self
            .get_json(&format!("logged-models/{model_id}"), &[])
            .await?;
        Ok(r.model.info.artifact_uri)
    }

    /// `model-versions/get-download-uri`.
    pub async fn get_download_uri(&self, name: &str, version: &str) -> Result<String, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            artifact_uri: String,
        }
        let r: R = self
            .get_json(
                "model-versions/get-download-uri",
                &[("name", name), ("version", version)],
            )
            .await?;
        Ok(r.artifact_uri)
    }

    /// Lists one directory level of the artifact store (a missing directory is empty).
    pub async fn list_artifacts(&self, path: &str) -> Result<Vec<FileInfo>, MlflowError> {
        #[derive(Deserialize)]
        struct R {
            #[serde(default)]
            files: Vec<FileInfo>,
        }
        let builder = self
            .request(
                Method::GET,
                "/api/2.0/mlflow-artifacts/artifacts",
                self.transfer_timeout(),
            )
            .query(&[("path", path)]);
        let r: R = self.send(builder).await?.json("mlflow-artifacts list")?;
        Ok(r.files)
    }

    /// Streams one artifact file to `target`, writing at most `budget` bytes; returns the
    /// bytes written, or `None` when the file holds more than the budget (the partial
    /// file is left for the caller to remove with its directory).
    async fn download_artifact_to(
        &self,
        path: &str,
        target: &Path,
        budget: u64,
    ) -> Result<Option<u64>, MlflowError> {
        use tokio::io::AsyncWriteExt;
        let builder = self.request(
            Method::GET,
            &format!("/api/2.0/mlflow-artifacts/artifacts/{path}"),
            self.transfer_timeout(),
        );
        let mut response = self.send_streaming(builder).await?;
        if response.content_length().is_some_and(|n| n > budget) {
            return Ok(None);
        }
        let mut file = tokio::fs::File::create(target)
            .await
            .map_err(|e| MlflowError::io(target, e))?;
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(&e))? {
            written += chunk.len() as u64;
            if written > budget {
                return Ok(None);
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| MlflowError::io(target, e))?;
        }
        file.flush().await.map_err(|e| MlflowError::io(target, e))?;
        Ok(Some(written))
    }

    /// Uploads one artifact file.
    pub async fn upload_artifact(&self, path: &str, bytes: Vec<u8>) -> Result<(), MlflowError> {
        let builder = self
            .request(
                Method::PUT,
                &format!("/api/2.0/mlflow-artifacts/artifacts/{path}"),
                self.transfer_timeout(),
            )
            .body(bytes);
        self.send(builder).await.map(|_| ())
    }

    /// Uploads every file under `local_dir` to the artifact location `uri`
    /// (`mlflow-artifacts:/...`, e.g. a run's `artifact_uri` + `/model`).
    pub async fn upload_dir(&self, local_dir: &Path, uri: &str) -> Result<usize, MlflowError> {
        let base = self.resolve_artifact_path(uri).await?;
        let mut files = Vec::new();
        collect_local_files(local_dir, local_dir, &mut files)?;
        for rel in &files {
            let path = local_dir.join(rel);
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| MlflowError::io(&path, e))?;
            self.upload_artifact(&format!("{base}/{rel}"), bytes)
                .await?;
        }
        Ok(files.len())
    }

    /// Downloads every file of a registered model version into `dest` (created; must be
    /// empty or absent).
    pub async fn download_model_version(
        &self,
        name: &str,
        version: &str,
        dest: &Path,
    ) -> Result<DownloadedArtifacts, MlflowError> {
        let uri = self.get_download_uri(name, version).await?;
        let root = self.resolve_artifact_path(&uri).await?;
        tokio::fs::create_dir_all(dest)
            .await
            .map_err(|e| MlflowError::io(dest, e))?;
        let mut pending = vec![String::new()];
        let (mut files, mut bytes) = (0usize, 0u64);
        while let Some(rel_dir) = pending.pop() {
            let listing_path = join_rel(&root, &rel_dir);
            for entry in self.list_artifacts(&listing_path).await? {
                let name = entry.path.rsplit('/').next().unwrap_or(&entry.path);
                check_relative(name)?;
                let rel = join_rel(&rel_dir, name);
                if entry.is_dir {
                    if rel.split('/').count() > MAX_DEPTH {
                        return Err(MlflowError::UnsupportedLocation {
                            uri,
                            reason: format!("directories nested deeper than {MAX_DEPTH}"),
                        });
                    }
                    pending.push(rel);
                    continue;
                }
                files += 1;
                if files > MAX_FILES {
                    return Err(MlflowError::UnsupportedLocation {
                        uri,
                        reason: format!("more than {MAX_FILES} files"),
                    });
                }
                let target = dest.join(&rel);
                if let Some(parent) = target.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(|e| MlflowError::io(parent, e))?;
                }
                let budget = (self.max_artifact_bytes() as u64).saturating_sub(bytes);
                match self
                    .download_artifact_to(&join_rel(&root, &rel), &target, budget)
                    .await?
                {
                    Some(written) => bytes += written,
                    None => {
                        return Err(MlflowError::TooLarge {
                            what: format!("the files of version {version} of {name}"),
                            limit: self.max_artifact_bytes(),
                        });
                    }
                }
            }
        }
        if files == 0 {
            return Err(MlflowError::NotFound {
                message: format!("version {version} of {name} has no files at {uri}"),
            });
        }
        Ok(DownloadedArtifacts {
            dir: dest.to_owned(),
            location: uri,
            files,
            bytes,
        })
    }
}

fn join_uri(base: &str, path: &str) -> String {
    if path.is_empty() {
        base.trim_end_matches('/').to_owned()
    } else {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

fn join_rel(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}

/// Artifact names come from the server: refuse any that would escape the target dir.
fn check_relative(name: &str) -> Result<(), MlflowError> {
    let p = Path::new(name);
    let ok = !name.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !name.contains('\\');
    if ok {
        Ok(())
    } else {
        Err(MlflowError::Decode {
            what: "mlflow-artifacts list".into(),
            message: format!("artifact name {name:?} is not a plain file name"),
        })
    }
}

fn collect_local_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), MlflowError> {
    let entries = std::fs::read_dir(dir).map_err(|e| MlflowError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| MlflowError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| MlflowError::io(&path, e))?;
        if kind.is_dir() {
            collect_local_files(root, &path, out)?;
        } else if let (true, Ok(rel)) = (kind.is_file(), path.strip_prefix(root)) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    out.sort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names_that_escape_are_refused() {
        assert!(check_relative("MLmodel").is_ok());
        assert!(check_relative("../etc").is_err());
        assert!(check_relative("/abs").is_err());
        assert!(check_relative("").is_err());
        assert_eq!(
            join_uri("mlflow-artifacts:/1/r/artifacts/", "/model"),
            "mlflow-artifacts:/1/r/artifacts/model"
        );
    }

    #[tokio::test]
    async fn mlflow_artifact_uris_resolve_without_asking_the_server() {
        let client = MlflowClient::new(crate::ClientConfig::new("http://127.0.0.1:9")).unwrap();
        assert_eq!(
            client
                .resolve_artifact_path("mlflow-artifacts:/1/abc/artifacts/model")
                .await
                .unwrap(),
            "1/abc/artifacts/model"
        );
        assert_eq!(
            client
                .resolve_artifact_path("mlflow-artifacts://10.0.0.1:5000/2/x/artifacts")
                .await
                .unwrap(),
            "2/x/artifacts"
        );
        let err = client
            .resolve_artifact_path("s3://bucket/model")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("--serve-artifacts"), "{err}");
    }
}
