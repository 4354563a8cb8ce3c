//! The predictor's shared state: the served model behind an `ArcSwap` (readers never
//! block), and the reload procedure that swaps it.

use std::sync::Arc;
use std::time::Duration;

use api::predictor::{ModelOrigin, ReloadRequest, ReloadResponse, ShadowRequest, ShadowResponse};
use api::selector::Selector;
use arc_swap::ArcSwapOption;

use crate::loader::{LoadError, Loader, ServedModel, check_schema};
use crate::metrics::Metrics;

pub struct AppState {
    model: ArcSwapOption<ServedModel>,
    /// One reload at a time; predictions never take it.
    reload_lock: tokio::sync::Mutex<()>,
    pub loader: Loader,
    /// The configured selector (MODEL_VERSION / MODEL_ALIAS / MODEL_STAGE).
    pub selector: Selector,
    pub metrics: Arc<Metrics>,
    /// The shadow challenger scored beside the served model.
    pub shadow: crate::shadow::Shadow,
    pub admin_token: Option<String>,
    /// The one address this pod listens on (`BIND_ADDR`, when not all): an admin
    /// signature must be for it.
    pub own_address: Option<String>,
    /// Admin signature nonces seen lately.
    pub nonces: crate::nonces::Nonces,
    pub max_instances: usize,
    /// Where predictions run, and their deadline.
    pub compute: crate::compute::Compute,
    /// Whether the `/ui` page is served (`PREDICTOR_UI`).
    pub ui: bool,
}

impl AppState {
    pub fn new(
        loader: Loader,
        selector: Selector,
        admin_token: Option<String>,
        max_instances: usize,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        AppState {
            model: ArcSwapOption::empty(),
            reload_lock: tokio::sync::Mutex::new(()),
            loader,
            selector,
            shadow: crate::shadow::Shadow::new(metrics.clone()),
            metrics,
            admin_token: admin_token.filter(|t| !t.is_empty()),
            own_address: None,
            nonces: crate::nonces::Nonces::default(),
            max_instances,
            compute: crate::compute::Compute::per_core(Duration::from_secs(10)),
            ui: true,
        }
    }

    /// The model serving right now (a cheap `Arc` clone; in-flight requests keep theirs).
    pub fn current(&self) -> Option<Arc<ServedModel>> {
        self.model.load_full()
    }

    fn serve(&self, model: ServedModel) {
        self.metrics.set_served_model(&model.info);
        let version = model.info.model_version.clone();
        self.model.store(Some(Arc::new(model)));
        self.track_version(&version);
        release_freed_memory();
    }

    /// Keeps the per-version series of what is served and shadowed, and a few more.
    fn track_version(&self, version: &str) {
        let served = self.current().map(|m| m.info.model_version.clone());
        let shadow = self.shadow.current().map(|m| m.info.model_version.clone());
        let in_use: Vec<&str> = [served.as_deref(), shadow.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        self.metrics.versions.loaded(version, &in_use);
    }

    /// Start-up: the registry by the configured selector, else the fallback directory.
    pub async fn load_initial(&self) -> Result<(), LoadError> {
        let _guard = self.reload_lock.lock().await;
        if self.current().is_some() {
            return Ok(());
        }
        let registry_error = match self.loader.from_registry(&self.selector).await {
            Ok(model) => {
                tracing::info!(
                    model = %model.info.model_name,
                    version = %model.info.model_version,
                    selector = %self.selector,
                    source = %model.info.source,
                    origin = "registry",
                    "model loaded from the registry"
                );
                self.serve(model);
                return Ok(());
            }
            Err(e) => e,
        };
        let preferred = match &self.selector {
            Selector::Version(v) => Some(v.as_str()),
            _ => None,
        };
        match self.loader.from_fallback(preferred).await {
            Ok(model) if matches!(registry_error, LoadError::NoRegistry) => {
                tracing::info!(
                    model = %model.info.model_name,
                    version = %model.info.model_version,
                    source = %model.info.source,
                    origin = "fallback",
                    "no registry configured; serving the fallback model"
                );
                self.serve(model);
                Ok(())
            }
            Ok(model) => {
                tracing::warn!(
                    model = %model.info.model_name,
                    version = %model.info.model_version,
                    source = %model.info.source,
                    origin = "fallback",
                    registry_error = %registry_error,
                    "registry model unavailable; serving the fallback model"
                );
                self.serve(model);
                Ok(())
            }
            Err(fallback_error) => {
                tracing::error!(
                    registry_error = %registry_error,
                    fallback_error = %fallback_error,
                    "no model could be loaded"
                );
                Err(registry_error)
            }
        }
    }

    /// Retries the start-up load until a model is served.
    pub async fn load_initial_until_served(self: Arc<Self>, every: Duration) {
        while self.current().is_none() {
            if self.load_initial().await.is_ok() {
                break;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// While the fallback model serves because the registry could not be used at start-up,
    /// tries the configured selector again every `every`; the first registry model loaded
    /// replaces the fallback. Ends once a registry model serves (also one an operator's
    /// reload brought), and does nothing without a registry.
    pub async fn return_to_registry(self: Arc<Self>, every: Duration) {
        if !self.loader.has_registry() {
            return;
        }
        loop {
            tokio::time::sleep(every).await;
            // Under the reload lock: a reload that just served a registry model wins.
            let _guard = self.reload_lock.lock().await;
            match self.current() {
                Some(m) if m.info.origin == ModelOrigin::Fallback => {}
                Some(_) => return,
                None => continue,
            }
            match self.loader.from_registry(&self.selector).await {
                Ok(model) => {
                    tracing::info!(
                        model = %model.info.model_name,
                        version = %model.info.model_version,
                        selector = %self.selector,
                        origin = "registry",
                        "the registry is back; serving its model instead of the fallback"
                    );
                    self.metrics.count_reload(true);
                    self.serve(model);
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "registry still unavailable; keeping the fallback")
                }
            }
        }
    }

    /// Loads the requested (or configured) version, verifies it and swaps it in. On any
    /// failure the served model is untouched.
    pub async fn reload(&self, request: ReloadRequest) -> Result<ReloadResponse, LoadError> {
        let result = self.reload_locked(request).await;
        self.metrics.count_reload(result.is_ok());
        match &result {
            Ok(r) => tracing::info!(
                old_version = ?r.old_version,
                new_version = %r.new_version,
                changed = r.changed,
                "model reloaded"
            ),
            Err(e) => tracing::warn!(error = %e, "reload failed; the served model is unchanged"),
        }
        result
    }

    async fn reload_locked(&self, request: ReloadRequest) -> Result<ReloadResponse, LoadError> {
        let _guard = self.reload_lock.lock().await;
        let selector = match request.version {
            Some(v) => Selector::Version(v),
            None => self.selector.clone(),
        };
        let served = self.current();
        let new = match self.promotable_shadow(&selector) {
            Some(shadow) => shadow,
            None => self.loader.from_registry(&selector).await?,
        };
        if !request.allow_schema_change {
            check_schema(served.as_ref(), &new)?;
        }
        let old_version = served.as_ref().map(|s| s.info.model_version.clone());
        let changed = served.as_ref().is_none_or(|s| {
            s.info.digest != new.info.digest || s.info.model_version != new.info.model_version
        });
        let message = match &old_version {
            Some(old) if changed => format!(
                "model {} reloaded: version {old} -> {}",
                new.info.model_name, new.info.model_version
            ),
            Some(old) => format!(
                "model {} version {old} was already served; nothing changed",
                new.info.model_name
            ),
            None => format!(
                "model {} version {} loaded",
                new.info.model_name, new.info.model_version
            ),
        };
        let response = ReloadResponse {
            status: "success".into(),
            message,
            model_name: new.info.model_name.clone(),
            old_version,
            new_version: new.info.model_version.clone(),
            changed,
            digest: new.info.digest.clone(),
            origin: new.info.origin,
        };
        self.serve(new);
        Ok(response)
    }
}

impl AppState {
    /// The shadow, when `selector` pins its version: it becomes the served model without a
    /// download (the same parsed model, shared).
    fn promotable_shadow(&self, selector: &Selector) -> Option<ServedModel> {
        let Selector::Version(version) = selector else {
            return None;
        };
        let shadow = self.shadow.current()?;
        (shadow.info.model_version == *version).then(|| {
            let mut promoted = ServedModel::clone(&shadow);
            promoted.info.loaded_at = chrono::Utc::now().to_rfc3339();
            promoted.info.selector = selector.to_string();
            promoted
        })
    }

    /// `POST /shadow-model`: loads `version` from the registry as the shadow challenger. It
    /// must take the served model's features (it scores the same rows). On any failure the
    /// shadow, if any, is untouched.
    pub async fn load_shadow(&self, request: ShadowRequest) -> Result<ShadowResponse, LoadError> {
        let _guard = self.reload_lock.lock().await;
        let version = request.version;
        let old = self.shadow.current().map(|m| m.info.model_version.clone());
        if old.as_deref() == Some(version.as_str()) {
            return Ok(ShadowResponse {
                status: "success".into(),
                message: format!("version {version} was already the shadow; nothing changed"),
                version: Some(version),
                old_version: old,
                changed: false,
            });
        }
        let new = self
            .loader
            .from_registry(&Selector::Version(version.clone()))
            .await?;
        check_schema(self.current().as_ref(), &new)?;
        self.shadow.set(Arc::new(new));
        self.track_version(&version);
        release_freed_memory();
        tracing::info!(old_shadow = ?old, shadow = %version, "shadow model loaded");
        Ok(ShadowResponse {
            status: "success".into(),
            message: format!("version {version} is scored as the shadow"),
            version: Some(version),
            old_version: old,
            changed: true,
        })
    }

    /// `DELETE /shadow-model`: stops scoring the shadow and frees it.
    pub async fn unload_shadow(&self) -> ShadowResponse {
        let _guard = self.reload_lock.lock().await;
        let old = self.shadow.clear();
        release_freed_memory();
        if let Some(old) = &old {
            tracing::info!(old_shadow = %old, "shadow model unloaded");
        }
        ShadowResponse {
            status: "success".into(),
            message: match &old {
                Some(v) => format!("shadow version {v} unloaded"),
                None => "no shadow was loaded; nothing changed".into(),
            },
            version: None,
            changed: old.is_some(),
            old_version: old,
        }
    }
}

/// Loading a model parses files many times its compiled size; glibc keeps those freed
/// pages unless asked. Returning them after each swap keeps the resident size near the
/// model's own (measured: 22 MB → see README).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages back to the kernel; it touches no
    // memory that is in use and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
