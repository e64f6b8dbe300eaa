//! Identity: HS256 JWTs minted for guests, or by any identity provider that
//! shares the secret.

use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::seq::IndexedRandom;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use shared::protocol::User;
use uuid::Uuid;

/// Guest tokens live a day.
pub const GUEST_TTL_S: i64 = 24 * 3600;
/// Clock skew tolerated on `exp`.
const LEEWAY_S: u64 = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    exp: i64,
}

/// A verified token's user and expiry.
#[derive(Clone, Debug)]
pub struct Identity {
    pub user: User,
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
}

pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_S;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
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
            exp: Utc::now().timestamp() + GUEST_TTL_S,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, user))
    }

    /// Checks signature, algorithm (HS256 only, so `alg: none` fails), expiry
    /// and that `sub` is a UUID.
    ///
    /// # Errors
    /// Any of those checks failing.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation)?;
        let id: Uuid = data.claims.sub.parse().map_err(|_| AuthError::BadSubject)?;
        let name = data
            .claims
            .name
            .and_then(|n| shared::validate::display_name(&n).ok())
            .unwrap_or_else(|| format!("User {}", &id.simple().to_string()[..8]));
        Ok(Identity {
            user: User::named(id, name),
            expires_at: data.claims.exp,
        })
    }
}

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

    #[test]
    fn guest_tokens_verify_and_carry_the_user() {
        let keys = Keys::new("s3cret");
        let (token, user) = keys.mint_guest("Ann".into()).unwrap();
        let id = keys.verify(&token).unwrap();
        assert_eq!(id.user, user);
        assert!(id.expires_at > Utc::now().timestamp() + GUEST_TTL_S - 60);
    }

    #[test]
    fn bad_tokens_are_refused() {
        let keys = Keys::new("s3cret");
        let sub = Uuid::new_v4().to_string();
        let now = Utc::now().timestamp();
        let good = serde_json::json!({"sub": sub, "name": "A", "exp": now + 60});
        assert!(keys.verify(&sign(&good, "s3cret")).is_ok());
        assert!(keys.verify(&sign(&good, "other")).is_err(), "wrong key");
        let expired = serde_json::json!({"sub": sub, "name": "A", "exp": now - 30});
        assert!(keys.verify(&sign(&expired, "s3cret")).is_err(), "expired");
        let within_leeway = serde_json::json!({"sub": sub, "name": "A", "exp": now - 2});
        assert!(
            keys.verify(&sign(&within_leeway, "s3cret")).is_ok(),
            "leeway"
        );
        let no_exp = serde_json::json!({"sub": sub, "name": "A"});
        assert!(keys.verify(&sign(&no_exp, "s3cret")).is_err(), "no exp");
        let not_uuid = serde_json::json!({"sub": "bob", "name": "A", "exp": now + 60});
        assert!(matches!(
            keys.verify(&sign(&not_uuid, "s3cret")),
            Err(AuthError::BadSubject)
        ));
        // alg: none, unsigned.
        use base64_url as b64;
        let none = format!(
            "{}.{}.",
            b64::encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64::encode(good.to_string().as_bytes())
        );
        assert!(keys.verify(&none).is_err(), "alg none");
        assert!(keys.verify("garbage").is_err());
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
