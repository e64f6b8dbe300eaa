//! Speaking the contract as a client: guest sign-in, a WebSocket per user,
//! and a light reading of the frames the load generator counts; and the
//! same for the Socket.IO peer the benchmark compares the product with.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Signs in as a guest; returns the token.
pub async fn guest(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<String> {
    Ok(guest_user(http, base, name).await?.0)
}

/// Signs in as a guest; returns the token and the user's id.
pub async fn guest_user(
    http: &reqwest::Client,
    base: &str,
    name: &str,
) -> anyhow::Result<(String, String)> {
    let response = http
        .post(format!("{base}/v1/auth/guest"))
        .json(&json!({ "name": name }))
        .send()
        .await?;
    // Read as text first: a failed sign-in is reported with its status
    // and body, not as a JSON error about an empty body.
    let status = response.status();
    let body = response.text().await?;
    let v: Value = serde_json::from_str(&body)
        .with_context(|| format!("guest sign-in answered {status} with {body:?}"))?;
    let token = v["token"].as_str().context("no token")?.to_owned();
    let id = v["user"]["id"].as_str().context("no user id")?.to_owned();
    Ok((token, id))
}

/// Small socket buffers: the load generator holds tens of thousands of
/// connections, and tungstenite zeroes its whole read buffer on each read.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
}

/// Opens a WebSocket from local address `127.0.0.<source>`: one source
/// address has about 28,000 ports to reach one server port from.
pub async fn open(base: &str, token: &str, source: u8) -> anyhow::Result<Socket> {
    open_path(base, &format!("/v1/ws?token={token}"), source).await
}

async fn open_path(base: &str, path: &str, source: u8) -> anyhow::Result<Socket> {
    let url = format!("{}{path}", base.replacen("http", "ws", 1));
    let authority = base
        .split("//")
        .nth(1)
        .context("a URL like http://host:port")?
        .trim_end_matches('/');
    let server: SocketAddr = tokio::net::lookup_host(authority)
        .await?
        .next()
        .context("the gateway's address")?;
    let socket = TcpSocket::new_v4()?;
    if server.ip().is_loopback() {
        socket.bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, source.max(1))),
            0,
        ))?;
    }
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        url,
        MaybeTlsStream::Plain(stream),
        Some(config()),
    )
    .await?;
    Ok(ws)
}

/// Joins `room` and waits for the ack.
pub async fn join(ws: &mut Socket, room: &str) -> anyhow::Result<()> {
    ws.send(Message::text(
        json!({"type": "room:join", "ref": "join", "data": {"room": room}}).to_string(),
    ))
    .await?;
    loop {
        let Some(msg) = ws.next().await else {
            bail!("closed while joining")
        };
        if let Message::Text(t) = msg? {
            let f: Frame<'_> = serde_json::from_str(&t)?;
            if f.reference == Some("join") {
                if f.kind != "ack" {
                    bail!("join refused: {t}");
                }
                return Ok(());
            }
        }
    }
}

/// The parts of a server frame the load generator reads, in one pass; the
/// rest is skipped unparsed.
#[derive(Deserialize)]
pub struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(rename = "ref", borrow, default)]
    pub reference: Option<&'a str>,
    #[serde(borrow, default)]
    pub data: Option<Data<'a>>,
}

/// The fields of `data` the counts need: an ack's or a persisted event's
/// `temp_id`, an error's `code`, a message (an object for events, a string
/// for errors, so kept raw).
#[derive(Deserialize)]
pub struct Data<'a> {
    #[serde(borrow, default)]
    pub temp_id: Option<&'a str>,
    #[serde(borrow, default)]
    pub code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub message: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub struct MessageText<'a> {
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
}

impl Data<'_> {
    /// The number of the load generator's send an event's message carries
    /// (its text is `lg <n>`).
    pub fn send_number(&self) -> Option<usize> {
        let m: MessageText<'_> = serde_json::from_str(self.message?.get()).ok()?;
        m.text?.strip_prefix("lg ")?.parse().ok()
    }
}

/// Which server the load generator speaks to.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The product's WebSocket contract (guest sign-in, JSON frames).
    Chat,
    /// The Socket.IO peer (`bench/peer`): Engine.IO 4 frames over a
    /// WebSocket, acks by id.
    Socketio,
}

/// What the load generator makes of a frame from either server.
pub enum Seen<'a> {
    /// Send number `send` was accepted as `temp_id`.
    Ack {
        send: usize,
        temp_id: &'a str,
    },
    /// A send was refused with this code.
    Refused(Cow<'a, str>),
    /// A `message:persisted` of the load generator's send `send`; the
    /// sender's own carries the `temp_id` it was acked with.
    Persisted {
        send: usize,
        temp_id: Option<&'a str>,
    },
    /// The server's heartbeat, to be answered (Socket.IO only).
    Ping,
    Other,
}

/// A Socket.IO ack's payload.
#[derive(Deserialize)]
struct SioAck<'a> {
    #[serde(borrow, default)]
    temp_id: Option<&'a str>,
    #[serde(borrow, default)]
    error: Option<SioError<'a>>,
}

#[derive(Deserialize)]
struct SioError<'a> {
    #[serde(borrow)]
    code: Cow<'a, str>,
}

impl Protocol {
    /// Signs `name` in (the product) and opens its connection.
    pub async fn connect(
        self,
        http: &reqwest::Client,
        base: &str,
        name: &str,
        source: u8,
    ) -> anyhow::Result<Socket> {
        match self {
            Protocol::Chat => open(base, &guest(http, base, name).await?, source).await,
            Protocol::Socketio => {
                let mut ws =
                    open_path(base, "/socket.io/?EIO=4&transport=websocket", source).await?;
                sio_expect(&mut ws, "0").await?;
                let hello = format!("40{}", json!({ "name": name }));
                ws.send(Message::text(hello)).await?;
                sio_expect(&mut ws, "40").await?;
                Ok(ws)
            }
        }
    }

    /// Joins `room` and waits for the ack.
    pub async fn join(self, ws: &mut Socket, room: &str) -> anyhow::Result<()> {
        match self {
            Protocol::Chat => join(ws, room).await,
            Protocol::Socketio => {
                let frame = format!("420{}", json!(["room:join", { "room": room }]));
                ws.send(Message::text(frame)).await?;
                let t = sio_expect(ws, "430").await?;
                if t.contains("\"error\"") {
                    bail!("join refused: {t}");
                }
                Ok(())
            }
        }
    }

    /// The frame of the load generator's send number `i`.
    pub fn send(self, i: usize, room: &str) -> String {
        let data = json!({"room": room, "text": format!("lg {i}")});
        match self {
            Protocol::Chat => {
                json!({"type": "message:send", "ref": i.to_string(), "data": data}).to_string()
            }
            Protocol::Socketio => format!("42{i}{}", json!(["message:send", data])),
        }
    }

    /// What a text frame from the server says.
    pub fn read<'a>(self, text: &'a str) -> Seen<'a> {
        match self {
            Protocol::Chat => read_chat(text),
            Protocol::Socketio => read_sio(text),
        }
        .unwrap_or(Seen::Other)
    }
}

fn read_chat(text: &str) -> Option<Seen<'_>> {
    let frame: Frame<'_> = serde_json::from_str(text).ok()?;
    let data = frame.data?;
    Some(match frame.kind.as_ref() {
        "ack" => Seen::Ack {
            send: frame.reference?.parse().ok()?,
            temp_id: data.temp_id?,
        },
        "error" => Seen::Refused(data.code.unwrap_or(Cow::Borrowed("?"))),
        "message:persisted" => Seen::Persisted {
            send: data.send_number()?,
            temp_id: data.temp_id,
        },
        _ => Seen::Other,
    })
}

fn read_sio(text: &str) -> Option<Seen<'_>> {
    if text == "2" {
        return Some(Seen::Ping);
    }
    if let Some(rest) = text.strip_prefix("43") {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let (id, body) = rest.split_at(digits);
        let (ack,): (SioAck<'_>,) = serde_json::from_str(body).ok()?;
        return Some(match (ack.temp_id, ack.error) {
            (Some(temp_id), _) => Seen::Ack {
                send: id.parse().ok()?,
                temp_id,
            },
            (None, e) => Seen::Refused(e.map_or(Cow::Borrowed("?"), |e| e.code)),
        });
    }
    let (kind, data): (Cow<'_, str>, Data<'_>) =
        serde_json::from_str(text.strip_prefix("42")?).ok()?;
    (kind == "message:persisted").then_some(())?;
    Some(Seen::Persisted {
        send: data.send_number()?,
        temp_id: data.temp_id,
    })
}

/// Reads Engine.IO frames until one starts with `prefix` (answering
/// heartbeats meanwhile); returns it.
async fn sio_expect(ws: &mut Socket, prefix: &str) -> anyhow::Result<String> {
    loop {
        let Some(msg) = ws.next().await else {
            bail!("closed while waiting for {prefix}")
        };
        if let Message::Text(t) = msg? {
            if t.as_str() == "2" {
                ws.send(Message::text("3")).await?;
            } else if t.starts_with(prefix) {
                return Ok(t.as_str().to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socketio_frames_read_as_acks_refusals_events_and_pings() {
        let p = Protocol::Socketio;
        assert_eq!(
            p.send(7, "r"),
            r#"427["message:send",{"room":"r","text":"lg 7"}]"#
        );
        match p.read(r#"4312[{"temp_id":"t-1"}]"#) {
            Seen::Ack { send, temp_id } => assert_eq!((send, temp_id), (12, "t-1")),
            _ => panic!("an ack"),
        }
        match p.read(r#"433[{"error":{"code":"not_a_member"}}]"#) {
            Seen::Refused(code) => assert_eq!(code, "not_a_member"),
            _ => panic!("a refusal"),
        }
        let event = r#"42["message:persisted",{"temp_id":"t-1","message":{"text":"lg 12"}}]"#;
        match p.read(event) {
            Seen::Persisted { send, temp_id } => assert_eq!((send, temp_id), (12, Some("t-1"))),
            _ => panic!("an event"),
        }
        assert!(matches!(p.read("2"), Seen::Ping));
        assert!(matches!(p.read(r#"42["other",{}]"#), Seen::Other));
    }

    #[test]
    fn product_frames_read_the_same_way() {
        let p = Protocol::Chat;
        let ack = r#"{"type":"ack","ref":"3","data":{"temp_id":"t"}}"#;
        assert!(matches!(
            p.read(ack),
            Seen::Ack {
                send: 3,
                temp_id: "t"
            }
        ));
        let err = r#"{"type":"error","ref":"4","data":{"code":"unavailable","message":"x"}}"#;
        assert!(matches!(p.read(err), Seen::Refused(c) if c == "unavailable"));
    }
}
