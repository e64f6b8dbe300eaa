//! An identity provider for the tests: the fixture keys (in
//! `e2e/fixtures/keys/`), tokens signed with them, and a real HTTP server
//! publishing a JWKS document whose keys a test can change while it runs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use warp::Filter;

/// The folder of the fixture keys.
pub fn keys_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keys"))
}

fn read(name: &str) -> String {
    let path = keys_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The algorithm a fixture key signs with.
fn alg_of(kid: &str) -> Algorithm {
    match kid {
        k if k.starts_with("rsa") => Algorithm::RS256,
        k if k.starts_with("ec") => Algorithm::ES256,
        _ => Algorithm::EdDSA,
    }
}

/// A token signed with fixture key `kid` (sent as the header's `kid` when
/// `with_kid`), carrying `claims`.
pub fn sign(kid: &str, with_kid: bool, claims: &Value) -> String {
    let pem = read(&format!("{kid}.key.pem"));
    let alg = alg_of(kid);
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_ed_pem(pem.as_bytes()),
    }
    .expect("a fixture private key");
    let mut header = Header::new(alg);
    header.kid = with_kid.then(|| kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).expect("signing with a fixture key")
}

/// Claims for `sub`, valid for `ttl_s` seconds, with `extra` merged in.
pub fn claims(sub: &str, ttl_s: i64, extra: Value) -> Value {
    let mut c =
        json!({"sub": sub, "name": "Idp User", "exp": chrono::Utc::now().timestamp() + ttl_s});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

/// The public PEM of fixture key `kid`.
pub fn public_pem(kid: &str) -> String {
    read(&format!("{kid}.pub.pem"))
}

#[derive(Clone)]
enum Mode {
    Serve(String),
    Fail,
    Hang,
}

/// A JWKS endpoint on loopback.
pub struct JwksServer {
    pub url: String,
    mode: Arc<Mutex<Mode>>,
    hits: Arc<Mutex<u64>>,
    _server: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Serves the JWKs of the fixture keys `kids`.
    pub async fn start(kids: &[&str]) -> Self {
        let mode = Arc::new(Mutex::new(Mode::Serve(Self::document(kids))));
        let hits = Arc::new(Mutex::new(0));
        let route = warp::path!("jwks.json").and_then({
            let (mode, hits) = (mode.clone(), hits.clone());
            move || {
                let (mode, hits) = (mode.clone(), hits.clone());
                async move {
                    *hits.lock().unwrap() += 1;
                    let now = mode.lock().unwrap().clone();
                    let reply: Box<dyn warp::Reply> = match now {
                        Mode::Serve(doc) => Box::new(warp::reply::with_header(
                            doc,
                            "content-type",
                            "application/json",
                        )),
                        Mode::Fail => Box::new(warp::http::StatusCode::INTERNAL_SERVER_ERROR),
                        Mode::Hang => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            Box::new(warp::http::StatusCode::GATEWAY_TIMEOUT)
                        }
                    };
                    Ok::<_, warp::Rejection>(reply)
                }
            }
        });
        let (addr, server) = crate::serve_on_loopback(route).await;
        Self {
            url: format!("http://{addr}/jwks.json"),
            mode,
            hits,
            _server: server,
        }
    }

    fn document(kids: &[&str]) -> String {
        let keys: Vec<Value> = kids
            .iter()
            .map(|k| serde_json::from_str(&read(&format!("{k}.jwk.json"))).expect("a fixture JWK"))
            .collect();
        json!({ "keys": keys }).to_string()
    }

    /// From now on, the document has these keys (a rotation at the provider).
    pub fn publish(&self, kids: &[&str]) {
        *self.mode.lock().unwrap() = Mode::Serve(Self::document(kids));
    }

    /// From now on, serves this text as the document.
    pub fn publish_raw(&self, text: &str) {
        *self.mode.lock().unwrap() = Mode::Serve(text.to_owned());
    }

    /// From now on, answers 500.
    pub fn fail(&self) {
        *self.mode.lock().unwrap() = Mode::Fail;
    }

    /// From now on, answers nothing for 30 s.
    pub fn hang(&self) {
        *self.mode.lock().unwrap() = Mode::Hang;
    }

    /// How many times the document was asked for.
    pub fn hits(&self) -> u64 {
        *self.hits.lock().unwrap()
    }
}
