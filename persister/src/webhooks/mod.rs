//! Webhooks: the application's backend hears of what happened in its rooms,
//! and of members who are offline, as signed JSON events POSTed to its URLs.
//!
//! The path has two halves, both in the persister (`docs/decisions.md` says
//! why):
//!
//! - [`record`]: after a batch commits and before its jobs are acked, the
//!   events of its outcomes are stored in a JetStream stream of their own
//!   (`<S>_hooks`), each with a stable id as its `Nats-Msg-Id`. A crash in
//!   between redelivers the jobs, whose outcomes are told again: nothing
//!   committed is missing from the hook stream.
//! - [`deliver`]: one durable consumer per receiver URL, delivered by the
//!   one persister holding that receiver's lease, in `seq` order per room,
//!   retried with growing delays for more than a day. A receiver that is
//!   down holds back only its own consumer: jobs, acks and sends never wait
//!   on it.

pub mod deliver;
pub mod notify;
pub mod record;

use std::fmt;

use sha2::{Digest, Sha256};

/// The webhook settings.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct WebhookConfig {
    /// Where webhook events are POSTed: one http(s) URL, or several comma
    /// separated (each gets every event).
    #[arg(long, env = "CHAT_WEBHOOK_URL")]
    pub chat_webhook_url: Option<String>,
    /// The key of every event's `X-Chat-Signature` (HMAC-SHA256 of the body).
    #[arg(long, env = "CHAT_WEBHOOK_SECRET", hide_env_values = true)]
    pub chat_webhook_secret: Option<String>,
}

/// A webhook setting the persister cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    #[error("CHAT_WEBHOOK_URL: {0:?} is not an http(s) URL")]
    NotHttp(String),
    #[error("CHAT_WEBHOOK_SECRET must be set when CHAT_WEBHOOK_URL is: every event is signed")]
    NoSecret,
}

/// One receiver of webhook events.
#[derive(Clone)]
pub struct Receiver {
    pub url: reqwest::Url,
    /// Names its consumer and lease: a digest of the URL, so every
    /// persister configured alike agrees on it whatever the list's order.
    pub key: String,
}

impl fmt::Debug for Receiver {
    // The URL may carry a token: only its origin is printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({})",
            self.url.origin().ascii_serialization(),
            self.key
        )
    }
}

/// The checked settings: the receivers and the signing key.
#[derive(Clone, Debug)]
pub struct Webhooks {
    pub receivers: Vec<Receiver>,
    pub secret: String,
}

impl WebhookConfig {
    /// The webhooks to deliver, `None` when no URL is set.
    ///
    /// # Errors
    /// A URL that is not http(s), or no secret.
    pub fn webhooks(&self) -> Result<Option<Webhooks>, WebhookConfigError> {
        let urls: Vec<&str> = self
            .chat_webhook_url
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Ok(None);
        }
        let mut receivers: Vec<Receiver> = Vec::with_capacity(urls.len());
        for text in urls {
            let url = reqwest::Url::parse(text)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| WebhookConfigError::NotHttp(text.to_owned()))?;
            let key = hex::encode(&Sha256::digest(url.as_str().as_bytes())[..8]);
            if receivers.iter().all(|r| r.key != key) {
                receivers.push(Receiver { url, key });
            }
        }
        let secret = self
            .chat_webhook_secret
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or(WebhookConfigError::NoSecret)?;
        Ok(Some(Webhooks { receivers, secret }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, secret: Option<&str>) -> WebhookConfig {
        WebhookConfig {
            chat_webhook_url: Some(url.to_owned()),
            chat_webhook_secret: secret.map(str::to_owned),
        }
    }

    #[test]
    fn urls_must_be_http_and_come_with_a_secret() {
        let hooks = config("http://a.example/h, https://b.example/h,", Some("s"))
            .webhooks()
            .unwrap()
            .unwrap();
        assert_eq!(hooks.receivers.len(), 2);
        assert_ne!(hooks.receivers[0].key, hooks.receivers[1].key);
        for bad in [
            "ftp://a.example/h",
            "nats://a:4222",
            "a.example/h",
            "http://",
        ] {
            let err = config(bad, Some("s")).webhooks().unwrap_err();
            assert!(
                err.to_string().starts_with("CHAT_WEBHOOK_URL"),
                "{bad}: {err}"
            );
        }
        let err = config("http://a.example/h", None).webhooks().unwrap_err();
        assert!(err.to_string().contains("CHAT_WEBHOOK_SECRET"));
        assert!(WebhookConfig::default().webhooks().unwrap().is_none());
    }

    #[test]
    fn a_receiver_prints_without_its_path_or_query() {
        let hooks = config("https://h.example/in?token=secret", Some("s"))
            .webhooks()
            .unwrap()
            .unwrap();
        let shown = format!("{:?}", hooks.receivers[0]);
        assert!(!shown.contains("secret"), "{shown}");
    }
}
