//! A webhook receiver on loopback, as an application would run one: it
//! checks each request's signature, deduplicates events by id, and can be
//! told to fail or to answer slowly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use warp::Filter;

/// The secret the tests' persisters sign with.
pub const SECRET: &str = "hook-secret-for-tests";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 200 at once.
    Take,
    /// 500 to everything.
    Fail,
    /// 200 after this long.
    Slow(Duration),
}

#[derive(Default)]
struct Log {
    /// Each event the first time it arrived, in that order.
    events: Vec<Value>,
    ids: std::collections::HashSet<String>,
    /// Requests answered 2xx whose event had arrived before.
    duplicates: u64,
    /// Requests answered anything but 2xx while failing.
    refused: u64,
    /// Requests whose signature or id header did not match their body.
    bad: Vec<String>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub url: String,
    mode: Arc<Mutex<Mode>>,
    log: Arc<Mutex<Log>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn expected_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Receiver {
    pub async fn start(mode: Mode) -> Self {
        let mode = Arc::new(Mutex::new(mode));
        let log = Arc::new(Mutex::new(Log::default()));
        let route = warp::post()
            .and(warp::path!("hooks"))
            .and(warp::header::optional::<String>("x-chat-signature"))
            .and(warp::header::optional::<String>("x-chat-event-id"))
            .and(warp::body::bytes())
            .then({
                let (mode, log) = (mode.clone(), log.clone());
                move |sig: Option<String>, id: Option<String>, body: bytes::Bytes| {
                    let (mode, log) = (mode.clone(), log.clone());
                    async move { receive(&mode, &log, sig, id, &body).await }
                }
            });
        let (addr, server) = crate::serve_on_loopback(route).await;
        Self {
            url: format!("http://{addr}/hooks"),
            mode,
            log,
            server,
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Every event taken, once each, in the order they first arrived.
    pub fn events(&self) -> Vec<Value> {
        self.log.lock().unwrap().events.clone()
    }

    pub fn duplicates(&self) -> u64 {
        self.log.lock().unwrap().duplicates
    }

    pub fn refused(&self) -> u64 {
        self.log.lock().unwrap().refused
    }

    /// Requests whose signature or id header was wrong.
    pub fn bad(&self) -> Vec<String> {
        self.log.lock().unwrap().bad.clone()
    }

    /// The events of one type, in order of arrival.
    pub fn of_type(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// Waits for `expected` events, then a moment more in which nothing but
    /// duplicates may come; returns them, every one correctly signed.
    pub async fn settled(&self, limit: Duration, expected: usize) -> Vec<Value> {
        self.until(limit, "every event", |e| e.len() >= expected)
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let events = self.events();
        assert_eq!(self.bad(), Vec::<String>::new(), "badly signed requests");
        assert_eq!(events.len(), expected, "{events:#?}");
        events
    }

    /// Waits until `check` holds of the events taken.
    pub async fn until(&self, limit: Duration, what: &str, check: impl Fn(&[Value]) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let events = self.events();
            if check(&events) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the receiver never got {what} within {limit:?}; it has {} events: {:#?}",
                events.len(),
                events.iter().map(|e| &e["type"]).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    mode: &Mutex<Mode>,
    log: &Mutex<Log>,
    sig: Option<String>,
    id: Option<String>,
    body: &[u8],
) -> warp::http::StatusCode {
    use warp::http::StatusCode;
    let event: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let body_id = event["id"].as_str().map(str::to_owned);
    if sig.as_deref() != Some(expected_signature(body).as_str()) || id.is_none() || id != body_id {
        log.lock()
            .unwrap()
            .bad
            .push(format!("{sig:?} {id:?} {event}"));
        return StatusCode::UNAUTHORIZED;
    }
    let now = *mode.lock().unwrap();
    match now {
        Mode::Fail => {
            log.lock().unwrap().refused += 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        Mode::Slow(d) => tokio::time::sleep(d).await,
        Mode::Take => {}
    }
    let mut log = log.lock().unwrap();
    if log.ids.insert(body_id.unwrap_or_default()) {
        log.events.push(event);
    } else {
        log.duplicates += 1;
    }
    StatusCode::OK
}
