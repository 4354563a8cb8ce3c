//! The operator's shared registry answers against a real MLflow: ForecastModels that ask
//! the same question at once get one answer from one MLflow call, and a webhook delivery
//! for the model makes the next reconcile ask again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use api::forecast_model::{ForecastModel, Selector};
use forecast_e2e::{mlflow_client, tracking_uri, train_and_register, unique_name};
use operator::metrics::{Metrics, ResultLabel};
use operator::registry::{Answer, Registry};

/// A registered model (v1 under `champion`), a ForecastModel naming it, and a `Registry`
/// with answers kept for `ttl`.
struct Asker {
    name: String,
    v1: String,
    fm: ForecastModel,
    selector: Selector,
    metrics: Arc<Metrics>,
    registry: Registry,
}

impl Asker {
    fn new(prefix: &str, seed: u64, ttl: Duration) -> anyhow::Result<Self> {
        let name = unique_name(prefix);
        let v1 = train_and_register(&name, seed, &["--alias", "champion"])?;
        let yaml = format!(
            "apiVersion: forecast.dev/v1alpha1\nkind: ForecastModel\nmetadata: {{name: shared, namespace: default, uid: u-1}}\nspec:\n  registry: {{trackingUri: \"{}\"}}\n  model: {{name: {name}, alias: champion}}\n",
            tracking_uri()
        );
        let fm: ForecastModel = serde_yaml::from_str(&yaml)?;
        let selector = fm.spec.model.selector().map_err(anyhow::Error::msg)?;
        mlflow::install_crypto_provider();
        let metrics = Arc::new(Metrics::default());
        let registry = Registry::new(ttl, metrics.clone());
        Ok(Asker {
            name,
            v1,
            fm,
            selector,
            metrics,
            registry,
        })
    }

    async fn ask(&self) -> Answer {
        self.registry
            .resolve(
                &self.fm.spec.registry.tracking_uri,
                mlflow::Credentials::None,
                &self.fm.spec.model.name,
                &self.selector,
            )
            .await
    }

    /// The version, or the registry's error as an anyhow error.
    async fn version(&self) -> anyhow::Result<String> {
        self.ask()
            .await
            .map(|v| v.version)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    async fn ask_at_once(&self, n: usize) -> Vec<Answer> {
        futures::future::join_all((0..n).map(|_| self.ask())).await
    }

    fn answers(&self, result: &str) -> u64 {
        self.metrics
            .registry_answers
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .get()
    }
}

#[tokio::test]
async fn concurrent_reconciles_share_one_answer_until_a_webhook_forgets_it() -> anyhow::Result<()> {
    let a = Asker::new("shared-answers", 1, Duration::from_secs(60))?;
    for answer in a.ask_at_once(20).await {
        assert_eq!(answer.map_err(|e| anyhow::anyhow!("{e}"))?.version, a.v1);
    }
    assert_eq!(a.answers("fetched"), 1, "one MLflow call for 20 asks");
    assert_eq!(a.answers("shared"), 19);

    // The alias moves: within the TTL the remembered answer stands...
    let v2 = train_and_register(&a.name, 2, &[])?;
    mlflow_client().set_alias(&a.name, "champion", &v2).await?;
    assert_eq!(a.version().await?, a.v1);
    // ...until a webhook delivery for the model forgets it.
    a.registry.forget_model(&a.name);
    assert_eq!(a.version().await?, v2);
    assert_eq!(a.answers("fetched"), 2);
    Ok(())
}

#[tokio::test]
async fn an_answer_older_than_the_ttl_is_asked_again_and_errors_are_shared_too()
-> anyhow::Result<()> {
    let a = Asker::new("ttl-answers", 3, Duration::from_millis(300))?;
    assert_eq!(a.version().await?, a.v1);
    mlflow_client()
        .delete_alias(&a.name, "champion")
        .await
        .context("delete alias")?;
    // Past twice the TTL: no previous answer is served any more.
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Asked again: the alias is gone, and every concurrent asker gets the same error.
    for answer in a.ask_at_once(5).await {
        let error = answer.err().context("the alias was deleted")?;
        assert!(
            !error.is_unreachable(),
            "MLflow answered, the alias is missing: {error}"
        );
        assert!(error.to_string().contains("champion"), "{error}");
    }
    assert_eq!(a.answers("fetched"), 2);
    assert_eq!(a.answers("shared"), 4);
    assert_eq!(a.answers("previous"), 0);
    Ok(())
}

#[tokio::test]
async fn while_an_expired_answer_is_asked_again_the_others_get_the_previous_one_at_once()
-> anyhow::Result<()> {
    // A TTL long enough that moving the alias fits well inside twice it.
    let a = Asker::new("previous-answers", 4, Duration::from_secs(1))?;
    let v2 = train_and_register(&a.name, 5, &[])?;
    assert_eq!(a.version().await?, a.v1);
    mlflow_client().set_alias(&a.name, "champion", &v2).await?;
    // Past the TTL, within twice it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let versions: Vec<String> = a
        .ask_at_once(5)
        .await
        .into_iter()
        .map(|v| v.map(|v| v.version).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<anyhow::Result<_>>()?;
    // The one that asked MLflow waited for the new answer; the others did not wait.
    assert_eq!(versions[0], v2, "{versions:?}");
    assert!(versions[1..].iter().all(|v| *v == a.v1), "{versions:?}");
    assert_eq!(a.answers("fetched"), 2);
    assert_eq!(a.answers("previous"), 4);
    // Once answered, the new answer is everyone's.
    assert_eq!(a.version().await?, v2);
    assert_eq!(a.answers("shared"), 1);
    Ok(())
}
