//! Resolving a ForecastModel's desired version in its MLflow registry.
//!
//! Many ForecastModels usually ask the same question (one model, one alias, one
//! registry). [`Registry`] answers each distinct question once per `answer_ttl`: later
//! calls reuse the answer until it is `answer_ttl` old. When it has expired, the first call
//! asks MLflow again and waits; calls that arrive while that question is in flight get the
//! answer it replaces, when that one is less than twice `answer_ttl` old, instead of
//! waiting on MLflow too (with thousands of ForecastModels on one model, a slow MLflow
//! answer would otherwise hold every reconcile of the moment); without such an answer they
//! wait for the new one. A webhook delivery for a model forgets its answers, so the
//! reconciles it triggers ask MLflow again and wait for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::forecast_model::Selector;
use mlflow::{ClientConfig, Credentials, MlflowClient, MlflowError, ModelVersion};
use tokio::sync::OnceCell;

use crate::metrics::Metrics;

/// Above this many remembered answers, expired ones are dropped.
const PRUNE_ABOVE: usize = 256;

/// The registry call that answers `selector` for `model`.
async fn ask(
    client: &MlflowClient,
    model: &str,
    selector: &Selector,
) -> Result<ModelVersion, MlflowError> {
    match selector {
        Selector::Alias(alias) => client.get_version_by_alias(model, alias).await,
        Selector::Stage(stage) => client.get_latest_version_in_stage(model, stage).await,
        Selector::Version(version) => client.get_model_version(model, version).await,
    }
}

/// A registry's answer, or why there is none. Shared by every caller that asked the same
/// question.
pub type Answer = Result<ModelVersion, Arc<MlflowError>>;

/// One question to a registry: who asks (tracking URI and credentials), about which model
/// and selector.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Question {
    client: String,
    model: String,
    selector: String,
}

struct Fetched {
    at: Instant,
    answer: Answer,
}

/// A question in flight or answered.
#[derive(Default)]
struct Flight {
    fetched: OnceCell<Fetched>,
    /// Set by the call that asks MLflow.
    asked: AtomicBool,
    /// The answer this flight replaces (none after a webhook's `forget_model`).
    previous: Option<Arc<Flight>>,
}

impl Flight {
    fn usable(&self, ttl: Duration) -> bool {
        self.fetched.get().is_none_or(|f| f.at.elapsed() < ttl)
    }

    /// The replaced flight's answer, when it is younger than `max_age`.
    fn previous_answer(&self, max_age: Duration) -> Option<Answer> {
        let fetched = self.previous.as_ref()?.fetched.get()?;
        (fetched.at.elapsed() < max_age).then(|| fetched.answer.clone())
    }
}

/// MLflow clients, credentials and recent answers, shared by every reconcile and the
/// webhook endpoint.
pub struct Registry {
    answer_ttl: Duration,
    metrics: Arc<Metrics>,
    clients: Mutex<HashMap<String, MlflowClient>>,
    answers: Mutex<HashMap<Question, Arc<Flight>>>,
}

fn client_key(uri: &str, creds: &Credentials) -> String {
    match creds {
        Credentials::None => format!("{uri}\n"),
        Credentials::Token(t) => format!("{uri}\ntoken\n{t}"),
        Credentials::Basic { username, password } => {
            format!("{uri}\nbasic\n{username}\n{password}")
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    pub fn new(answer_ttl: Duration, metrics: Arc<Metrics>) -> Self {
        Registry {
            answer_ttl,
            metrics,
            clients: Default::default(),
            answers: Default::default(),
        }
    }

    /// Asks the registry at `uri` which version `selector` of `model` points at (or reuses
    /// a recent answer to the same question).
    pub async fn resolve(
        &self,
        uri: &str,
        creds: Credentials,
        model: &str,
        selector: &Selector,
    ) -> Answer {
        let question = Question {
            client: client_key(uri, &creds),
            model: model.to_owned(),
            selector: selector.to_string(),
        };
        let registry = self
            .client(&question.client, uri, creds)
            .map_err(Arc::new)?;
        let flight = self.flight(&question);
        // While someone else asks, a recent enough previous answer is served at once.
        if flight.fetched.get().is_none()
            && flight.asked.swap(true, Ordering::AcqRel)
            && let Some(previous) = flight.previous_answer(self.answer_ttl * 2)
        {
            Metrics::count(&self.metrics.registry_answers, "previous");
            return previous;
        }
        let mut asked = false;
        let fetched = flight
            .fetched
            .get_or_init(|| {
                asked = true;
                async {
                    let started = Instant::now();
                    let answer = ask(&registry, model, selector).await.map_err(Arc::new);
                    self.metrics
                        .registry_poll
                        .observe(started.elapsed().as_secs_f64());
                    Fetched {
                        at: Instant::now(),
                        answer,
                    }
                }
            })
            .await;
        Metrics::count(
            &self.metrics.registry_answers,
            if asked { "fetched" } else { "shared" },
        );
        fetched.answer.clone()
    }

    /// Forgets every answer about `model`, so the next reconciles ask MLflow again.
    pub fn forget_model(&self, model: &str) {
        lock(&self.answers).retain(|q, _| q.model != model);
    }

    /// The flight for `question`: the one in progress or still fresh, else a new one.
    fn flight(&self, question: &Question) -> Arc<Flight> {
        let mut answers = lock(&self.answers);
        if let Some(f) = answers.get(question).filter(|f| f.usable(self.answer_ttl)) {
            return f.clone();
        }
        if answers.len() > PRUNE_ABOVE {
            answers.retain(|_, f| f.usable(self.answer_ttl));
        }
        // The expired flight is kept as the new one's previous answer (its own previous
        // is dropped: one step back at most).
        let previous = answers.remove(question).map(|old| {
            Arc::new(Flight {
                fetched: old.fetched.get().map_or_else(OnceCell::new, |f| {
                    OnceCell::new_with(Some(Fetched {
                        at: f.at,
                        answer: f.answer.clone(),
                    }))
                }),
                asked: AtomicBool::new(true),
                previous: None,
            })
        });
        let flight = Arc::new(Flight {
            previous,
            ..Flight::default()
        });
        answers.insert(question.clone(), flight.clone());
        flight
    }

    fn client(
        &self,
        key: &str,
        uri: &str,
        creds: Credentials,
    ) -> Result<MlflowClient, MlflowError> {
        let mut clients = lock(&self.clients);
        if let Some(c) = clients.get(key) {
            return Ok(c.clone());
        }
        let client = MlflowClient::new(ClientConfig::new(uri).with_credentials(creds))?;
        clients.insert(key.to_owned(), client.clone());
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(model: &str) -> Question {
        Question {
            client: "http://mlflow\n".into(),
            model: model.into(),
            selector: "alias champion".into(),
        }
    }

    fn answered(registry: &Registry, q: &Question, version: &str) {
        let flight = registry.flight(q);
        let set = flight.fetched.set(Fetched {
            at: Instant::now(),
            answer: Ok(ModelVersion {
                version: version.into(),
                ..Default::default()
            }),
        });
        assert!(set.is_ok(), "a fresh flight is unanswered");
    }

    #[test]
    fn a_fresh_answer_is_shared_and_an_old_one_is_not() {
        let registry = Registry::new(Duration::from_millis(200), Arc::default());
        let q = question("archive-forecast-rf");
        answered(&registry, &q, "3");
        assert!(Arc::ptr_eq(&registry.flight(&q), &registry.flight(&q)));
        std::thread::sleep(Duration::from_millis(250));
        let next = registry.flight(&q);
        assert!(
            next.fetched.get().is_none(),
            "an expired answer is asked again"
        );
    }

    #[test]
    fn a_question_in_flight_is_joined() {
        let registry = Registry::new(Duration::ZERO, Arc::default());
        let q = question("archive-forecast-rf");
        let first = registry.flight(&q);
        assert!(Arc::ptr_eq(&first, &registry.flight(&q)));
    }

    #[test]
    fn while_an_expired_answer_is_asked_again_the_previous_one_is_served() {
        let registry = Registry::new(Duration::from_millis(100), Arc::default());
        let q = question("archive-forecast-rf");
        answered(&registry, &q, "3");
        // The clock moves past the TTL (not past twice it).
        let old = registry.flight(&q);
        let aged = Fetched {
            at: Instant::now() - Duration::from_millis(150),
            answer: old.fetched.get().unwrap().answer.clone(),
        };
        lock(&registry.answers).insert(
            q.clone(),
            Arc::new(Flight {
                fetched: OnceCell::new_with(Some(aged)),
                ..Flight::default()
            }),
        );
        let next = registry.flight(&q);
        assert!(next.fetched.get().is_none(), "asked again");
        let previous = next.previous_answer(Duration::from_millis(200)).unwrap();
        assert_eq!(previous.unwrap().version, "3");
        assert!(
            next.previous_answer(Duration::from_millis(100)).is_none(),
            "too old to serve"
        );
        // The one after that remembers only one step back.
        assert!(next.previous.as_ref().unwrap().previous.is_none());
    }

    #[test]
    fn a_forgotten_model_has_no_previous_answer_to_serve() {
        let registry = Registry::new(Duration::ZERO, Arc::default());
        let q = question("a");
        answered(&registry, &q, "1");
        registry.forget_model("a");
        assert!(registry.flight(&q).previous.is_none());
    }

    #[test]
    fn forgetting_a_model_keeps_the_others() {
        let registry = Registry::new(Duration::from_secs(60), Arc::default());
        let (a, b) = (question("a"), question("b"));
        answered(&registry, &a, "1");
        answered(&registry, &b, "1");
        registry.forget_model("a");
        assert!(registry.flight(&a).fetched.get().is_none());
        assert!(registry.flight(&b).fetched.get().is_some());
    }
}
