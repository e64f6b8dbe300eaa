//! Identity: HS256 JWTs minted for guests or by an identity provider that
//! shares the secret, and RS256, ES256 and EdDSA tokens of the
//! application's identity provider, verified against its public keys
//! ([`crate::keys`]).

use std::sync::Arc;

use chrono::Utc;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use rand::seq::IndexedRandom;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use shared::protocol::User;
use uuid::Uuid;

use crate::keys::{Jwks, PublicKey};

/// Guest tokens live a day.
pub const GUEST_TTL_S: i64 = 24 * 3600;
/// Clock skew tolerated on `exp`.
const LEEWAY_S: u64 = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// A verified token's user and expiry.
#[derive(Clone, Debug)]
pub struct Identity {
    pub user: User,
    /// The token named the user (else `user.name` is made up from the id).
    pub name_claimed: bool,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Why a token was refused. Clients only ever see `unauthorized`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("token subject is not a UUID")]
    BadSubject,
    #[error("no key verifies a token of this algorithm and kid")]
    NoKey,
}

/// Who may sign tokens, and what a token must say.
pub struct Keys {
    encoding: EncodingKey,
    secret: DecodingKey,
    public: Vec<PublicKey>,
    jwks: Option<Arc<Jwks>>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Keys {
    /// HS256 tokens only, with `secret`.
    pub fn new(secret: &str) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            secret: DecodingKey::from_secret(secret.as_bytes()),
            public: Vec::new(),
            jwks: None,
            issuer: None,
            audience: None,
        }
    }

    /// Also the identity provider's public keys, from a PEM file and a JWKS.
    pub fn with_public_keys(mut self, public: Vec<PublicKey>, jwks: Option<Arc<Jwks>>) -> Self {
        self.public = public;
        self.jwks = jwks;
        self
    }

    /// `iss` and `aud` every token must carry, when set.
    pub fn requiring(mut self, issuer: Option<String>, audience: Option<String>) -> Self {
        self.issuer = issuer.filter(|s| !s.is_empty());
        self.audience = audience.filter(|s| !s.is_empty());
        self
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_S;
        let mut required = vec!["exp", "sub"];
        required.extend(self.issuer.as_ref().map(|_| "iss"));
        required.extend(self.audience.as_ref().map(|_| "aud"));
        v.set_required_spec_claims(&required);
        v.validate_exp = true;
        match &self.issuer {
            Some(iss) => v.set_issuer(&[iss]),
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        v
    }

    /// A guest token for a new user.
    ///
    /// # Errors
    /// Never in practice: HS256 signing of these claims cannot fail.
    pub fn mint_guest(&self, name: String) -> Result<(String, User), AuthError> {
        let user = User::named(Uuid::new_v4(), name);
        let claims = Claims {
            sub: user.id.to_string(),
            name: user.name.clone(),
            avatar_url: None,
            exp: Utc::now().timestamp() + GUEST_TTL_S,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, user))
    }

    /// Checks the signature with a key of the token's own algorithm (HS256:
    /// the secret; RS256, ES256, EdDSA: the provider's keys, by `kid` in
    /// the JWKS), the expiry, `iss` and `aud` when required, and that `sub`
    /// is a UUID. `alg: none` and every other algorithm fail.
    ///
    /// # Errors
    /// Any of those checks failing.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = decode_header(token)?;
        let claims = match header.alg {
            Algorithm::HS256 => {
                decode::<Claims>(token, &self.secret, &self.validation(Algorithm::HS256))?.claims
            }
            alg @ (Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA) => {
                self.verify_public(token, alg, header.kid.as_deref())
                    .await?
            }
            _ => return Err(AuthError::NoKey),
        };
        let id: Uuid = claims.sub.parse().map_err(|_| AuthError::BadSubject)?;
        let claimed = claims
            .name
            .and_then(|n| shared::validate::display_name(&n).ok());
        let name_claimed = claimed.is_some();
        let name = claimed.unwrap_or_else(|| format!("User {}", &id.simple().to_string()[..8]));
        // A picture that is not an http(s) URL is left out, not fatal.
        let avatar_url = claims
            .avatar_url
            .filter(|u| shared::validate::avatar_url(u).is_ok());
        Ok(Identity {
            user: User {
                avatar_url,
                ..User::named(id, name)
            },
            name_claimed,
            expires_at: claims.exp,
        })
    }

    /// Tries the keys of the token's algorithm: the JWKS key of its `kid`
    /// first, then the PEM file's.
    async fn verify_public(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Claims, AuthError> {
        let mut candidates: Vec<PublicKey> = Vec::new();
        if let (Some(jwks), Some(kid)) = (&self.jwks, kid) {
            candidates.extend(jwks.key(kid).await);
        }
        candidates.extend(self.public.iter().cloned());
        let validation = self.validation(alg);
        let mut last = AuthError::NoKey;
        for candidate in candidates.iter().filter(|k| k.alg == alg) {
            match decode::<Claims>(token, &candidate.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(err) => last = AuthError::Invalid(err),
            }
        }
        Err(last)
    }
}

/// The application backend's keys for the server API (`CHAT_API_KEYS`).
/// None: the server API refuses every call.
#[derive(Clone, Debug, Default)]
pub struct ApiKeys(Vec<String>);

impl ApiKeys {
    /// Keys from a comma-separated list; empty entries are ignored.
    pub fn parse(list: &str) -> Self {
        Self(
            list.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Whether `key` is one of them, compared in time that does not depend
    /// on where it differs.
    pub fn accepts(&self, key: &str) -> bool {
        self.0
            .iter()
            .fold(false, |found, k| found | same(k.as_bytes(), key.as_bytes()))
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

// Guest names: an adjective, an animal and a number.
const ADJECTIVES: &[&str] = &[
    "Brave", "Calm", "Clever", "Curious", "Eager", "Gentle", "Happy", "Jolly", "Kind", "Lively",
    "Lucky", "Merry", "Nimble", "Proud", "Quick", "Quiet", "Shy", "Sunny", "Swift", "Witty",
];
const ANIMALS: &[&str] = &[
    "Otter", "Badger", "Falcon", "Fox", "Heron", "Koala", "Lynx", "Marten", "Owl", "Panda",
    "Puffin", "Rabbit", "Raven", "Seal", "Sparrow", "Tiger", "Turtle", "Walrus", "Whale", "Wolf",
];

/// "Brave Otter 42".
pub fn friendly_name() -> String {
    let mut rng = rand::rng();
    // Both lists are non-empty constants.
    let adjective = ADJECTIVES.choose(&mut rng).expect("non-empty");
    let animal = ANIMALS.choose(&mut rng).expect("non-empty");
    format!("{adjective} {animal} {}", rng.random_range(1..100))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(claims: &serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn guest_tokens_verify_and_carry_the_user() {
        let keys = Keys::new("s3cret");
        let (token, user) = keys.mint_guest("Ann".into()).unwrap();
        let id = keys.verify(&token).await.unwrap();
        assert_eq!(id.user, user);
        assert!(id.expires_at > Utc::now().timestamp() + GUEST_TTL_S - 60);
    }

    #[tokio::test]
    async fn bad_tokens_are_refused() {
        let keys = Keys::new("s3cret");
        let sub = Uuid::new_v4().to_string();
        let now = Utc::now().timestamp();
        let good = serde_json::json!({"sub": sub, "name": "A", "exp": now + 60});
        assert!(keys.verify(&sign(&good, "s3cret")).await.is_ok());
        assert!(
            keys.verify(&sign(&good, "other")).await.is_err(),
            "wrong key"
        );
        let expired = serde_json::json!({"sub": sub, "name": "A", "exp": now - 30});
        assert!(
            keys.verify(&sign(&expired, "s3cret")).await.is_err(),
            "expired"
        );
        let within_leeway = serde_json::json!({"sub": sub, "name": "A", "exp": now - 2});
        assert!(
            keys.verify(&sign(&within_leeway, "s3cret")).await.is_ok(),
            "leeway"
        );
        let no_exp = serde_json::json!({"sub": sub, "name": "A"});
        assert!(
            keys.verify(&sign(&no_exp, "s3cret")).await.is_err(),
            "no exp"
        );
        let not_uuid = serde_json::json!({"sub": "bob", "name": "A", "exp": now + 60});
        assert!(matches!(
            keys.verify(&sign(&not_uuid, "s3cret")).await,
            Err(AuthError::BadSubject)
        ));
        // alg: none, unsigned.
        use base64_url as b64;
        let none = format!(
            "{}.{}.",
            b64::encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64::encode(good.to_string().as_bytes())
        );
        assert!(keys.verify(&none).await.is_err(), "alg none");
        assert!(keys.verify("garbage").await.is_err());
    }

    /// Unpadded URL-safe base64, enough to forge an `alg: none` token.
    mod base64_url {
        pub fn encode(input: &[u8]) -> String {
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in input.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        }
    }

    #[test]
    fn friendly_names_look_like_adjective_animal_number() {
        let n = friendly_name();
        let parts: Vec<&str> = n.split(' ').collect();
        assert_eq!(parts.len(), 3, "{n}");
        assert!(parts[2].parse::<u32>().is_ok(), "{n}");
    }
}
