//! The identity provider's public keys: a PEM file read at start
//! (`CHAT_JWT_PUBLIC_KEYS`), and a JWKS document fetched, cached and
//! fetched again (`CHAT_JWKS_URL`).
//!
//! Each key carries the one algorithm it verifies (RS256 for RSA, ES256 for
//! P-256, EdDSA for Ed25519), so a token is only ever checked with a key of
//! its own kind; HMAC ("oct") keys in a JWKS are ignored, so an HS256 token
//! is never checked against a published key.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// A key and the algorithm it verifies.
#[derive(Clone)]
pub struct PublicKey {
    pub key: DecodingKey,
    pub alg: Algorithm,
}

/// Why keys could not be loaded: the gateway stops at start with this,
/// naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("CHAT_JWT_PUBLIC_KEYS: cannot read {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("CHAT_JWT_PUBLIC_KEYS: {0}")]
    BadPem(String),
    #[error("CHAT_JWKS_URL: {0}")]
    BadJwks(String),
}

/// Every public key of a PEM file, in order.
///
/// # Errors
/// An unreadable file, one without keys, or a block that is not an RSA,
/// EC P-256 or Ed25519 public key.
pub fn read_pem_file(path: &Path) -> Result<Vec<PublicKey>, KeysError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeysError::Unreadable {
        path: path.display().to_string(),
        source,
    })?;
    let blocks = pem_blocks(&text);
    if blocks.is_empty() {
        return Err(KeysError::BadPem(format!(
            "{} holds no PEM public key",
            path.display()
        )));
    }
    blocks
        .iter()
        .enumerate()
        .map(|(i, block)| {
            pem_key(block.as_bytes()).ok_or_else(|| {
                KeysError::BadPem(format!(
                    "key {} of {} is not an RSA, EC P-256 or Ed25519 public key",
                    i + 1,
                    path.display()
                ))
            })
        })
        .collect()
}

/// The `-----BEGIN …-----` … `-----END …-----` blocks of a text.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line.starts_with("-----END ") {
            blocks.extend(current.take());
        }
    }
    blocks
}

fn pem_key(pem: &[u8]) -> Option<PublicKey> {
    let as_key = |key: DecodingKey, alg| PublicKey { key, alg };
    DecodingKey::from_rsa_pem(pem)
        .map(|k| as_key(k, Algorithm::RS256))
        .or_else(|_| DecodingKey::from_ec_pem(pem).map(|k| as_key(k, Algorithm::ES256)))
        .or_else(|_| DecodingKey::from_ed_pem(pem).map(|k| as_key(k, Algorithm::EdDSA)))
        .ok()
}

/// The key of a JWK and its algorithm, when it is one this service takes.
fn jwk_key(jwk: &Jwk) -> Option<PublicKey> {
    let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
            if p.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        (AlgorithmParameters::OctetKeyPair(p), None | Some(KeyAlgorithm::EdDSA))
            if p.curve == EllipticCurve::Ed25519 =>
        {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(PublicKey { key, alg })
}

/// A JWKS document's keys by `kid` (keys without one under "").
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, PublicKey>, KeysError> {
    let set: JwkSet = serde_json::from_slice(body)
        .map_err(|e| KeysError::BadJwks(format!("not a JWKS document: {e}")))?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| Some((jwk.common.key_id.clone().unwrap_or_default(), jwk_key(jwk)?)))
        .collect())
}

/// An unknown `kid` fetches the document again at most this often.
const REFETCH_EVERY: Duration = Duration::from_secs(30);
/// One fetch may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// The keys of a JWKS document, kept fresh.
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<HashMap<String, PublicKey>>,
    /// One fetch for an unknown `kid` at a time, and when the last one
    /// started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    /// Fetches the document once. An endpoint that does not answer yet is
    /// tried again on the schedule; a document that is not a JWKS stops
    /// the gateway.
    ///
    /// # Errors
    /// A URL that is not http(s), or a malformed document.
    pub async fn load(url: &str, refresh: Duration) -> Result<Arc<Self>, KeysError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(KeysError::BadJwks(format!("{url:?} is not an http(s) URL")));
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| KeysError::BadJwks(e.to_string()))?;
        let jwks = Arc::new(Self {
            url: url.to_owned(),
            client,
            keys: RwLock::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(None),
        });
        match jwks.fetch_now().await {
            Ok(()) => {}
            Err(Fetch::Malformed(err)) => return Err(err),
            Err(Fetch::Unreachable(why)) => {
                tracing::warn!(%url, %why, "the JWKS endpoint does not answer; trying again")
            }
        }
        tokio::spawn(Arc::clone(&jwks).refresh_every(refresh));
        Ok(jwks)
    }

    /// The key for `kid`; an unknown one fetches the document again first,
    /// at most every [`REFETCH_EVERY`]. Known keys never wait on the
    /// endpoint.
    pub async fn key(&self, kid: &str) -> Option<PublicKey> {
        if let Some(k) = self.cached(kid) {
            return Some(k);
        }
        let mut last = self.fetching.lock().await;
        // Someone else may have fetched it while this waited.
        if let Some(k) = self.cached(kid) {
            return Some(k);
        }
        if last.is_none_or(|at| at.elapsed() >= REFETCH_EVERY) {
            *last = Some(Instant::now());
            if let Err(err) = self.fetch_now().await {
                tracing::warn!(url = %self.url, error = %err, "fetching the JWKS for an unknown kid failed");
            }
        }
        self.cached(kid)
    }

    fn cached(&self, kid: &str) -> Option<PublicKey> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    async fn refresh_every(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(err) = self.fetch_now().await {
                tracing::warn!(url = %self.url, error = %err, "refreshing the JWKS failed; keeping the keys it had");
            }
        }
    }

    /// Fetches the document and replaces the keys; on any failure the keys
    /// stay as they were.
    async fn fetch_now(&self) -> Result<(), Fetch> {
        let resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| Fetch::Unreachable(e.to_string()))?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| Fetch::Unreachable(e.to_string()))?;
        let keys = parse_jwks(&body).map_err(Fetch::Malformed)?;
        tracing::info!(url = %self.url, keys = keys.len(), "JWKS loaded");
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum Fetch {
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Malformed(KeysError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/../e2e/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn each_pem_key_gets_the_one_algorithm_of_its_kind() {
        let text = ["rsa-a", "ec-1", "ed-1"]
            .map(|k| fixture(&format!("{k}.pub.pem")))
            .join("\n");
        let algs: Vec<Algorithm> = pem_blocks(&text)
            .iter()
            .map(|b| pem_key(b.as_bytes()).unwrap().alg)
            .collect();
        assert_eq!(algs, [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]);
        assert!(pem_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_none());
    }

    #[test]
    fn a_jwks_keeps_signing_keys_of_known_kinds_and_drops_hmac_ones() {
        let doc = format!(
            r#"{{"keys": [{}, {}, {}, {{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}}]}}"#,
            fixture("rsa-a.jwk.json"),
            fixture("ec-1.jwk.json"),
            fixture("ed-1.jwk.json")
        );
        let keys = parse_jwks(doc.as_bytes()).unwrap();
        assert_eq!(keys["rsa-a"].alg, Algorithm::RS256);
        assert_eq!(keys["ec-1"].alg, Algorithm::ES256);
        assert_eq!(keys["ed-1"].alg, Algorithm::EdDSA);
        assert!(
            !keys.contains_key("h"),
            "an HMAC key is never published for us"
        );
        assert!(parse_jwks(b"{\"nope\": 1}").is_err());
    }
}
