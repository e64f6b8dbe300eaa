//! `/healthz`, `/readyz` and `/metrics`, the same on both binaries.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

/// Answers whether the process can do its work right now, and if not, why.
pub trait Readiness: Send + Sync + 'static {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// The three operator endpoints.
pub fn routes(
    ready: Arc<dyn Readiness>,
    metrics: PrometheusHandle,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})));
    let readyz = warp::path!("readyz").and(warp::get()).and_then(move || {
        let ready = ready.clone();
        async move {
            let reply = match ready.check().await {
                Ok(()) => warp::reply::with_status(
                    warp::reply::json(&serde_json::json!({"status": "ready"})),
                    StatusCode::OK,
                ),
                Err(why) => warp::reply::with_status(
                    warp::reply::json(&serde_json::json!({"status": "unavailable", "reason": why})),
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
            };
            Ok::<_, Rejection>(reply)
        }
    });
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        // Tasks alive tell an operator what each connection or job costs
        // the runtime, and show a leak as a number that only grows.
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        metrics::gauge!("runtime_tasks_alive").set(tasks as f64);
        crate::alloc::record();
        warp::reply::with_header(
            metrics.render(),
            "content-type",
            "text/plain; version=0.0.4",
        )
    });
    healthz.or(readyz).or(metrics)
}
