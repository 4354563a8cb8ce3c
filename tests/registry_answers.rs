//! The operator's shared registry answers against a real MLflow: ForecastModels that ask
//! the same question at once get one answer from one MLflow call, and a webhook delivery
//! for the model makes the next reconcile ask again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use api::forecast_model::ForecastModel;
use forecast_e2e::{mlflow_client, tracking_uri, train_and_register, unique_name};
use operator::metrics::{Metrics, ResultLabel};
use operator::registry::Registry;

fn forecast_model(model: &str) -> anyhow::Result<ForecastModel> {
    let yaml = format!(
        "apiVersion: forecast.dev/v1alpha1\nkind: ForecastModel\nmetadata: {{name: shared, namespace: default, uid: u-1}}\nspec:\n  registry: {{trackingUri: \"{}\"}}\n  model: {{name: {model}, alias: champion}}\n",
        tracking_uri()
    );
    Ok(serde_yaml::from_str(&yaml)?)
}

/// A client for the credentials lookup, which a ForecastModel without
/// `credentialsSecret` never makes (nothing listens on this address).
fn unused_cluster() -> anyhow::Result<kube::Client> {
    mlflow::install_crypto_provider();
    let config = kube::Config::new("http://127.0.0.1:9".parse()?);
    Ok(kube::Client::try_from(config)?)
}

fn answers(metrics: &Metrics, result: &str) -> u64 {
    metrics
        .registry_answers
        .get_or_create(&ResultLabel {
            result: result.into(),
        })
        .get()
}

#[tokio::test]
async fn concurrent_reconciles_share_one_answer_until_a_webhook_forgets_it() -> anyhow::Result<()> {
    let name = unique_name("shared-answers");
    let v1 = train_and_register(&name, 1, &["--alias", "champion"])?;
    let fm = forecast_model(&name)?;
    let selector = fm.spec.model.selector().map_err(anyhow::Error::msg)?;
    let cluster = unused_cluster()?;
    let metrics = Arc::new(Metrics::default());
    let registry = Registry::new(Duration::from_secs(60), metrics.clone());

    let asked = (0..20).map(|_| registry.resolve(&cluster, &fm, &selector));
    for answer in futures::future::join_all(asked).await {
        assert_eq!(answer.map_err(|e| anyhow::anyhow!("{e}"))?.version, v1);
    }
    assert_eq!(
        answers(&metrics, "fetched"),
        1,
        "one MLflow call for 20 asks"
    );
    assert_eq!(answers(&metrics, "shared"), 19);

    // The alias moves: within the TTL the remembered answer stands...
    let v2 = train_and_register(&name, 2, &[])?;
    mlflow_client().set_alias(&name, "champion", &v2).await?;
    let cached = registry
        .resolve(&cluster, &fm, &selector)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(cached.version, v1);
    // ...until a webhook delivery for the model forgets it.
    registry.forget_model(&name);
    let fresh = registry
        .resolve(&cluster, &fm, &selector)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(fresh.version, v2);
    assert_eq!(answers(&metrics, "fetched"), 2);
    Ok(())
}

#[tokio::test]
async fn an_answer_older_than_the_ttl_is_asked_again_and_errors_are_shared_too()
-> anyhow::Result<()> {
    let name = unique_name("ttl-answers");
    let v1 = train_and_register(&name, 3, &["--alias", "champion"])?;
    let fm = forecast_model(&name)?;
    let selector = fm.spec.model.selector().map_err(anyhow::Error::msg)?;
    let cluster = unused_cluster()?;
    let metrics = Arc::new(Metrics::default());
    let registry = Registry::new(Duration::from_millis(300), metrics.clone());

    let first = registry.resolve(&cluster, &fm, &selector).await;
    assert_eq!(first.map_err(|e| anyhow::anyhow!("{e}"))?.version, v1);
    mlflow_client()
        .delete_alias(&name, "champion")
        .await
        .context("delete alias")?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Asked again: the alias is gone, and every concurrent asker gets the same error.
    let asked = (0..5).map(|_| registry.resolve(&cluster, &fm, &selector));
    for answer in futures::future::join_all(asked).await {
        let error = answer.err().context("the alias was deleted")?;
        assert!(
            !error.is_unreachable(),
            "MLflow answered, the alias is missing: {error}"
        );
        assert!(error.to_string().contains("champion"), "{error}");
    }
    assert_eq!(answers(&metrics, "fetched"), 2);
    assert_eq!(answers(&metrics, "shared"), 4);
    Ok(())
}
