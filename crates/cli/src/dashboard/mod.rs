//! `forecastctl dashboard`: a local web page of every ForecastModel the caller can read —
//! rollouts, canaries, shadows, pods, traffic, events — served on 127.0.0.1 with the
//! caller's own kubeconfig, so the caller's RBAC decides what it shows. Nothing runs in
//! the cluster. The ForecastModels are watched; the page updates itself through
//! server-sent events (one small script, served by the dashboard itself).

mod fleet_page;
mod model_page;
mod snapshot;
mod traffic;
mod words;

use std::time::Duration;

use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, get, web};
use anyhow::Context;
use api::forecast_model::ForecastModel;
use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use maud::Markup;

const STYLESHEET_PATH: &str = "/static/style.css";
const SCRIPT: &str = include_str!("live.js");
/// How often an open page is refreshed without a change (pods, traffic, the bake's bar).
const TICK: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// The namespace to show (default: the kubeconfig context's).
    #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Every namespace the caller may read.
    #[arg(long, short = 'A')]
    all_namespaces: bool,
    /// The local port (the page listens on 127.0.0.1 only).
    #[arg(long, default_value_t = 3100)]
    port: u16,
    /// Open the page in the default browser.
    #[arg(long)]
    open: bool,
}

struct Dashboard {
    client: Client,
    scope: String,
    store: Store<ForecastModel>,
    /// Bumped on every change the watch sees.
    changes: tokio::sync::watch::Receiver<u64>,
    rates: traffic::Rates,
}

/// Runs the dashboard until interrupted (on a thread of its own: actix-web runs its own
/// runtime).
pub fn run(args: DashboardArgs) -> anyhow::Result<()> {
    std::thread::spawn(move || actix_web::rt::System::new().block_on(serve(args)))
        .join()
        .map_err(|_| anyhow::anyhow!("the dashboard thread panicked"))?
}

async fn serve(args: DashboardArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("no usable kubeconfig (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let (api, scope): (Api<ForecastModel>, String) = if args.all_namespaces {
        (Api::all(client.clone()), "all namespaces".into())
    } else {
        let ns = args
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        (
            Api::namespaced(client.clone(), &ns),
            format!("namespace {ns}"),
        )
    };
    // Fail early and clearly when the caller may not read ForecastModels here.
    api.list(&kube::api::ListParams::default().limit(1))
        .await
        .with_context(|| format!("cannot list ForecastModels in {scope}"))?;
    let (store, writer) = reflector::store();
    let (bump, changes) = tokio::sync::watch::channel(0u64);
    let watch = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    actix_web::rt::spawn(async move {
        let mut watch = std::pin::pin!(watch);
        while let Some(event) = watch.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, "watching ForecastModels");
            }
            bump.send_modify(|n| *n += 1);
        }
    });
    let dashboard = web::Data::new(Dashboard {
        client,
        scope,
        store,
        changes,
        rates: traffic::Rates::default(),
    });
    let address = ("127.0.0.1", args.port);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(dashboard.clone())
            .service(fleet)
            .service(model)
            .service(events)
            .service(stylesheet)
            .service(script)
    })
    .workers(1)
    .bind(address)
    .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let port = server.addrs().first().map_or(args.port, |a| a.port());
    let url = format!("http://127.0.0.1:{port}/");
    println!("forecastctl dashboard: {url} (Ctrl-C to stop)");
    if args.open {
        // Best effort: without a desktop the URL above is the way in.
        let _ = std::process::Command::new("xdg-open").arg(&url).spawn();
    }
    server.run().await.context("the dashboard's server")
}

/// A page, or with `X-Fragment: 1` (the live script) only its content.
fn page(request: &HttpRequest, title: &str, content: Markup) -> HttpResponse {
    let fragment = request
        .headers()
        .get("X-Fragment")
        .is_some_and(|v| v.as_bytes() == b"1");
    let body = if fragment {
        content.into_string()
    } else {
        let with_script = maud::html! {
            (content)
            script src="/static/live.js" {}
        };
        pages::layout::page(title, STYLESHEET_PATH, with_script).into_string()
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", pages::CONTENT_SECURITY_POLICY))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

#[get("/")]
async fn fleet(dashboard: web::Data<Dashboard>, request: HttpRequest) -> HttpResponse {
    let models = dashboard.store.state();
    page(
        &request,
        "ForecastModels · forecastctl dashboard",
        fleet_page::render(&models, &dashboard.scope),
    )
}

#[get("/models/{namespace}/{name}")]
async fn model(
    dashboard: web::Data<Dashboard>,
    path: web::Path<(String, String)>,
    request: HttpRequest,
) -> HttpResponse {
    let (ns, name) = path.into_inner();
    let Some(fm) = dashboard.store.get(&ObjectRef::new(&name).within(&ns)) else {
        let content = maud::html! {
            p { a href="/" { "← all ForecastModels" } }
            (pages::layout::error_box("not_found", &format!("no ForecastModel {ns}/{name} in {}", dashboard.scope)))
        };
        let mut response = page(&request, "not found", content);
        *response.status_mut() = actix_web::http::StatusCode::NOT_FOUND;
        return response;
    };
    let snapshot = snapshot::read(&dashboard.client, &fm).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    page(
        &request,
        &format!("{ns}/{name} · forecastctl dashboard"),
        model_page::render(&fm, &snapshot, &dashboard.rates, now),
    )
}

/// Server-sent events: `changed` when the watch saw a change, `tick` every few seconds.
#[get("/events")]
async fn events(dashboard: web::Data<Dashboard>) -> HttpResponse {
    let changes = dashboard.changes.clone();
    let stream = futures::stream::unfold(
        (changes, tokio::time::interval(TICK)),
        |(mut changes, mut tick)| async move {
            let message = tokio::select! {
                changed = changes.changed() => match changed {
                    Ok(()) => "data: changed\n\n",
                    Err(_) => return None,
                },
                _ = tick.tick() => "data: tick\n\n",
            };
            Some((
                Ok::<_, actix_web::Error>(web::Bytes::from_static(message.as_bytes())),
                (changes, tick),
            ))
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream)
}

#[get("/static/style.css")]
async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(pages::layout::STYLESHEET)
}

#[get("/static/live.js")]
async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(SCRIPT)
}
