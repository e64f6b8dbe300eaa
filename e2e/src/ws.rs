//! A WebSocket client speaking the chat protocol, for tests.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::{Guest, WAIT};

/// The secret every test stack signs with.
pub const TEST_SECRET: &str = "e2e-test-secret";

/// What arrives from the server.
#[derive(Debug)]
pub enum Incoming {
    Frame(Value),
    Closed(Option<(u16, String)>),
}

pub struct WsClient {
    pub user: Guest,
    out: mpsc::UnboundedSender<Message>,
    inbox: mpsc::UnboundedReceiver<Incoming>,
    /// Frames read while looking for another.
    pending: VecDeque<Value>,
    next_ref: AtomicU64,
    /// `session:ready`'s data.
    pub ready: Value,
    reader: tokio::task::AbortHandle,
    /// How the connection closed, once it has.
    close: Option<Option<(u16, String)>>,
}

/// Dropping a client closes its connection, as closing a browser tab does.
impl Drop for WsClient {
    fn drop(&mut self) {
        // The writer sends a close frame when its channel closes; the
        // reader holds the other half of the socket and must go too.
        self.reader.abort();
    }
}

impl WsClient {
    /// Connects with `?token=` and waits for `session:ready`.
    pub async fn connect(ws_url: &str, user: Guest) -> Self {
        let url = format!("{ws_url}?token={}", user.token);
        let (socket, _) = tokio_tungstenite::connect_async(&url)
            .await
            .unwrap_or_else(|e| panic!("websocket connect to {ws_url}: {e}"));
        let (mut sink, mut stream) = socket.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (in_tx, inbox) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let reader = tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                match m {
                    Ok(Message::Text(t)) => {
                        let v: Value = serde_json::from_str(&t).expect("server frames are JSON");
                        if in_tx.send(Incoming::Frame(v)).is_err() {
                            return;
                        }
                    }
                    Ok(Message::Close(frame)) => {
                        let c = frame.map(|CloseFrame { code, reason }| {
                            (u16::from(code), reason.to_string())
                        });
                        let _ = in_tx.send(Incoming::Closed(c));
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let _ = in_tx.send(Incoming::Closed(None));
                        return;
                    }
                }
            }
            let _ = in_tx.send(Incoming::Closed(None));
        })
        .abort_handle();
        let mut c = Self {
            user,
            out,
            inbox,
            pending: VecDeque::new(),
            next_ref: AtomicU64::new(1),
            ready: Value::Null,
            reader,
            close: None,
        };
        let ready = c.expect_event("session:ready").await;
        c.ready = ready["data"].clone();
        c
    }

    /// Sends a raw text frame.
    pub fn send_text(&self, text: impl Into<String>) {
        let _ = self.out.send(Message::text(text.into()));
    }

    pub fn send_binary(&self, bytes: Vec<u8>) {
        let _ = self.out.send(Message::binary(bytes));
    }

    /// Sends `{type, ref, data}` and returns the ref.
    pub fn send(&self, kind: &str, data: Value) -> String {
        let r = format!("r{}", self.next_ref.fetch_add(1, Ordering::Relaxed));
        self.send_text(json!({"type": kind, "ref": r, "data": data}).to_string());
        r
    }

    /// Sends a request and waits for its reply (`ack` or `error`).
    pub async fn request(&mut self, kind: &str, data: Value) -> Value {
        let r = self.send(kind, data);
        self.reply(&r).await
    }

    /// Sends a request and returns the ack's data, panicking on an error.
    pub async fn ok(&mut self, kind: &str, data: Value) -> Value {
        let reply = self.request(kind, data.clone()).await;
        assert_eq!(reply["type"], "ack", "{kind} {data} was refused: {reply}");
        reply["data"].clone()
    }

    /// Sends a request and returns the error code, panicking on an ack.
    pub async fn refused(&mut self, kind: &str, data: Value) -> String {
        let reply = self.request(kind, data.clone()).await;
        assert_eq!(
            reply["type"], "error",
            "{kind} {data} was not refused: {reply}"
        );
        reply["data"]["code"]
            .as_str()
            .expect("error code")
            .to_owned()
    }

    /// The reply with this ref.
    pub async fn reply(&mut self, r: &str) -> Value {
        self.find(&format!("reply to {r}"), |v| v["ref"] == r).await
    }

    /// The reply with this ref, or `None` once the connection is closed.
    pub async fn reply_or_closed(&mut self, r: &str) -> Option<Value> {
        self.try_find(WAIT, &|v: &Value| v["ref"] == r).await.ok()
    }

    /// The next frame of this type (others are kept for later).
    pub async fn expect_event(&mut self, kind: &str) -> Value {
        self.find(kind, |v| v["type"] == kind).await
    }

    /// The first frame matching `pred`, waiting up to [`WAIT`].
    pub async fn find(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.find_within(WAIT, what, pred).await
    }

    /// The first frame matching `pred`, waiting up to `limit`.
    pub async fn find_within(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        match self.try_find(limit, &pred).await {
            Ok(v) => v,
            Err(closed) => panic!(
                "{} never got {what} within {limit:?} (closed: {closed:?}); frames seen: {:?}",
                self.user.name, self.pending
            ),
        }
    }

    async fn try_find(
        &mut self,
        limit: Duration,
        pred: &impl Fn(&Value) -> bool,
    ) -> Result<Value, Option<Option<(u16, String)>>> {
        if let Some(i) = self.pending.iter().position(pred) {
            return Ok(self.pending.remove(i).expect("index is in range"));
        }
        if let Some(close) = &self.close {
            return Err(Some(close.clone()));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(Incoming::Frame(v))) => {
                    if pred(&v) {
                        return Ok(v);
                    }
                    self.pending.push_back(v);
                }
                Ok(Some(Incoming::Closed(c))) => {
                    self.close = Some(c.clone());
                    return Err(Some(c));
                }
                Ok(None) => {
                    self.close = Some(None);
                    return Err(Some(None));
                }
                Err(_) => return Err(None),
            }
        }
    }

    /// The next frame of this type, or pending for ever (for use under a
    /// timeout of the caller's).
    pub async fn expect_event_quiet(&mut self, kind: &str) -> Value {
        match self
            .try_find(Duration::from_secs(3600), &|v: &Value| v["type"] == kind)
            .await
        {
            Ok(v) => v,
            Err(_) => std::future::pending().await,
        }
    }

    /// Asserts no frame of this type arrives within `limit`.
    pub async fn expect_no(&mut self, kind: &str, limit: Duration) {
        self.expect_none(kind, limit, |v| v["type"] == kind).await;
    }

    /// Asserts no frame matching `pred` arrives within `limit`.
    pub async fn expect_none(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) {
        if let Ok(v) = self.try_find(limit, &pred).await {
            panic!("{} got an unexpected {what}: {v}", self.user.name);
        }
    }

    /// Waits for the server to close the connection; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        match self.try_find(WAIT, &|_: &Value| false).await {
            Err(Some(c)) => c.map(|(code, _)| code),
            Err(None) => panic!("{} was not closed within {WAIT:?}", self.user.name),
            Ok(_) => unreachable!("the predicate matches nothing"),
        }
    }

    /// `message:persisted` for this temp id.
    pub async fn persisted(&mut self, temp_id: &str) -> Value {
        self.find(&format!("message:persisted {temp_id}"), |v| {
            v["type"] == "message:persisted" && v["data"]["temp_id"] == temp_id
        })
        .await["data"]["message"]
            .clone()
    }

    /// Joins a room and returns the ack's data.
    pub async fn join(&mut self, room: &str) -> Value {
        self.ok("room:join", json!({ "room": room })).await
    }

    /// Sends a text message and returns the ack's temp_id.
    pub async fn say(&mut self, room: &str, text: &str) -> String {
        let ack = self
            .ok("message:send", json!({"room": room, "text": text}))
            .await;
        ack["temp_id"].as_str().expect("temp_id").to_owned()
    }
}

/// A token signed with the test secret, for claims a guest sign-in does
/// not make (short expiry, odd subjects).
pub fn token(sub: impl ToString, name: &str, exp: i64) -> String {
    let claims = json!({"sub": sub.to_string(), "name": name, "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}
