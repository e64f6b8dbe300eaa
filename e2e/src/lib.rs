//! The end-to-end harness: real `gateway` and `persister` processes, a real
//! NATS server with JetStream, a PostgreSQL database of each test's own, and
//! real WebSocket and HTTP clients.
//!
//! Tests that do not stop a server share one NATS server
//! (`CHAT_TEST_NATS_URL`) and one PostgreSQL server, each with a stream and
//! a database of its own; fault tests start a NATS server of their own.
//! `scripts/test.sh` starts what is needed and sets the variables.

pub mod db;
pub mod faults;
pub mod hooks;
pub mod idp;
pub mod procs;
pub mod ws;

use std::time::Duration;

use serde_json::Value;

pub use procs::{Gateway, NatsCluster, NatsServer, Persister, Stack};
pub use ws::WsClient;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

pub(crate) fn required_env(name: &str, how: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set. {how}\nThe simplest way: run scripts/test.sh, which starts everything the tests need.")
    })
}

/// The shared NATS server (a current one, with JetStream).
pub fn nats_url() -> String {
    required_env(
        "CHAT_TEST_NATS_URL",
        "Start a NATS server >= 2.12.10 with JetStream (nats-server -js -p 4333) and set CHAT_TEST_NATS_URL=nats://127.0.0.1:4333.",
    )
}

/// A superuser URL of the PostgreSQL server the tests make databases on.
pub fn admin_database_url() -> String {
    std::env::var("CHAT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A guest signed in over HTTP.
#[derive(Clone, Debug)]
pub struct Guest {
    pub token: String,
    pub id: String,
    pub name: String,
}

/// Serves `route` on a free loopback port (a JWKS endpoint, a webhook
/// receiver); the server stops when its task is aborted or the test ends.
pub async fn serve_on_loopback<F>(route: F) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>)
where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let listener = tokio::net::TcpListener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("its address");
    (
        addr,
        tokio::spawn(warp::serve(route).incoming(listener).run()),
    )
}

/// An HTTP client for the tests.
pub fn http() -> reqwest::Client {
    shared::net::install_tls_provider();
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("an HTTP client builds")
}

/// `POST /v1/auth/guest`.
pub async fn guest(base: &str, name: Option<&str>) -> Guest {
    let body = match name {
        Some(n) => serde_json::json!({ "name": n }),
        None => serde_json::json!({}),
    };
    let resp = http()
        .post(format!("{base}/v1/auth/guest"))
        .json(&body)
        .send()
        .await
        .expect("guest sign-in answers");
    assert_eq!(resp.status(), 200, "guest sign-in");
    let v: Value = resp.json().await.expect("guest sign-in is JSON");
    Guest {
        token: v["token"].as_str().expect("token").to_owned(),
        id: v["user"]["id"].as_str().expect("user.id").to_owned(),
        name: v["user"]["name"].as_str().expect("user.name").to_owned(),
    }
}

/// `GET url` with a bearer token, as JSON.
pub async fn get_json(url: &str, token: &str) -> Value {
    http()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url} is not JSON: {e}"))
}

/// A metric's value from a process's `/metrics`: summed over its label
/// sets when it has some.
pub async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let values: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        .filter_map(|rest| rest.rsplit(' ').next()?.trim().parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The `text` of each message of a history page.
pub fn texts(page: &Value) -> Vec<String> {
    messages(page)
        .iter()
        .map(|m| m["text"].as_str().expect("text").to_owned())
        .collect()
}

/// The `seq` of each message of a history page.
pub fn seqs(page: &Value) -> Vec<i64> {
    messages(page)
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

fn messages(page: &Value) -> &Vec<Value> {
    page["messages"].as_array().expect("a page has messages")
}

/// Waits until every message acked with these `temp_id`s is stored, and
/// asserts each is stored once.
pub async fn all_stored_once(pool: &sqlx::PgPool, acked: &[String]) {
    let want = acked.len() as i64;
    let n: i64 = eventually("the acked messages to be persisted", || async move {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM messages WHERE temp_id::text = ANY($1)")
                .bind(acked)
                .fetch_one(pool)
                .await
                .ok()?;
        (n >= want).then_some(n)
    })
    .await;
    assert_eq!(n, want, "each acked message stored once");
}

/// Polls `check` until it returns `Some`, or panics with `what` after
/// [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(WAIT, what, check).await
}

/// Polls `check` until it returns `Some`, or panics with `what` after
/// `limit`.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
