//! Speaking the contract as a client: guest sign-in, a WebSocket per user,
//! and a light reading of the frames the load generator counts.

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
    let v: Value = http
        .post(format!("{base}/v1/auth/guest"))
        .json(&json!({ "name": name }))
        .send()
        .await?
        .json()
        .await?;
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
    let url = format!("{}/v1/ws?token={token}", base.replacen("http", "ws", 1));
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
