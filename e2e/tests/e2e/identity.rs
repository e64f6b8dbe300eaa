//! The application's own users: tokens of its identity provider (RS256,
//! ES256, EdDSA, against a PEM file and a live JWKS endpoint whose keys
//! rotate), `iss`/`aud`, guest sign-in turned off, `session:refresh`.

use std::time::{Duration, Instant};

use e2e::idp::{self, JwksServer};
use e2e::{http, Gateway, Guest, Stack, WsClient};
use serde_json::json;

const ISS: &str = "https://idp.example";
const AUD: &str = "chat";

/// The status `GET /v1/rooms` answers a token with.
async fn status(base: &str, token: &str) -> u16 {
    http()
        .get(format!("{base}/v1/rooms"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the gateway answers")
        .status()
        .as_u16()
}

fn pem_file(kids: &[&str]) -> tempfile_path::Path {
    tempfile_path::write(&kids.iter().map(|k| idp::public_pem(k)).collect::<String>())
}

/// A file of the test's own, removed when dropped.
mod tempfile_path {
    pub struct Path(pub std::path::PathBuf);
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    pub fn write(text: &str) -> Path {
        let p = std::env::temp_dir().join(format!("chat-keys-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&p, text).expect("write a key file");
        Path(p)
    }
}

async fn stack_with(env: &[(&str, &str)]) -> Stack {
    Stack::build(&e2e::nats_url(), 1, 1, env).await
}

#[tokio::test]
async fn tokens_of_each_algorithm_are_accepted_and_forged_or_foreign_ones_refused() {
    let jwks = JwksServer::start(&["rsa-a", "ec-1"]).await;
    let pems = pem_file(&["ed-1"]);
    let pem_path = pems.0.to_string_lossy().into_owned();
    let stack = stack_with(&[
        ("CHAT_JWKS_URL", &jwks.url),
        ("CHAT_JWT_PUBLIC_KEYS", &pem_path),
        ("CHAT_JWT_ISSUER", ISS),
        ("CHAT_JWT_AUDIENCE", AUD),
    ])
    .await;
    let base = &stack.gateway().url;
    let sub = uuid::Uuid::new_v4().to_string();
    let ok = idp::claims(&sub, 600, json!({"iss": ISS, "aud": AUD}));

    for (what, token) in [
        ("RS256 from the JWKS", idp::sign("rsa-a", true, &ok)),
        ("ES256 from the JWKS", idp::sign("ec-1", true, &ok)),
        ("EdDSA from the PEM file", idp::sign("ed-1", false, &ok)),
        ("HS256 with the secret", hs256(&ok, e2e::ws::TEST_SECRET)),
    ] {
        assert_eq!(status(base, &token).await, 200, "{what}");
    }
    // The WebSocket takes them too, and names the user from the claims.
    let guest = Guest {
        token: idp::sign("ec-1", true, &ok),
        id: sub.clone(),
        name: "Idp User".into(),
    };
    let ws = WsClient::connect(&stack.gateway().ws_url(), guest).await;
    assert_eq!(
        ws.ready["user"],
        json!({"id": sub, "name": "Idp User", "avatar_url": null})
    );

    let confusion = hs256(&ok, &idp::public_pem("rsa-a"));
    for (what, token) in [
        ("an HS256 token keyed with a public key", confusion),
        (
            "a wrong iss",
            idp::sign(
                "rsa-a",
                true,
                &idp::claims(&sub, 600, json!({"iss": "https://evil", "aud": AUD})),
            ),
        ),
        (
            "a wrong aud",
            idp::sign(
                "rsa-a",
                true,
                &idp::claims(&sub, 600, json!({"iss": ISS, "aud": "other"})),
            ),
        ),
        (
            "no aud",
            idp::sign("rsa-a", true, &idp::claims(&sub, 600, json!({"iss": ISS}))),
        ),
        (
            "expired",
            idp::sign(
                "rsa-a",
                true,
                &idp::claims(&sub, -60, json!({"iss": ISS, "aud": AUD})),
            ),
        ),
        ("alg none", alg_none(&ok)),
    ] {
        assert_eq!(status(base, &token).await, 401, "{what}");
    }

    // The provider rotates: a new key appears, the old one goes. No restart.
    jwks.publish(&["rsa-b", "ec-1"]);
    assert_eq!(
        status(base, &idp::sign("rsa-b", true, &ok)).await,
        200,
        "the new key"
    );
    assert_eq!(
        status(base, &idp::sign("rsa-a", true, &ok)).await,
        401,
        "the removed key"
    );
    // A key nobody published: one more fetch at most every 30 s, and no.
    let hits = jwks.hits();
    for _ in 0..5 {
        let stranger = idp::sign("ed-1", true, &ok);
        assert_eq!(
            status(base, &stranger).await,
            200,
            "ed-1 is in the PEM file"
        );
        assert_eq!(
            status(base, &idp::sign("rsa-a", true, &ok)).await,
            401,
            "a key the JWKS no longer has"
        );
    }
    assert!(
        jwks.hits() <= hits + 1,
        "unknown kids fetched the JWKS {} times",
        jwks.hits() - hits
    );

    // A failing or hanging endpoint never holds up keys already cached.
    for (what, break_it) in [
        ("failing", JwksServer::fail as fn(&JwksServer)),
        ("hanging", JwksServer::hang),
    ] {
        break_it(&jwks);
        let asked = Instant::now();
        assert_eq!(
            status(base, &idp::sign("ec-1", true, &ok)).await,
            200,
            "{what}"
        );
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            asked.elapsed()
        );
    }
}

#[tokio::test]
async fn with_guest_sign_in_off_only_the_providers_tokens_get_in() {
    let pems = pem_file(&["ed-1"]);
    let path = pems.0.to_string_lossy().into_owned();
    let stack = stack_with(&[
        ("CHAT_GUEST_SIGNIN", "off"),
        ("CHAT_JWT_PUBLIC_KEYS", &path),
    ])
    .await;
    let base = &stack.gateway().url;
    let resp = http()
        .post(format!("{base}/v1/auth/guest"))
        .json(&json!({"name": "Ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["code"],
        "forbidden"
    );
    let sub = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        status(
            base,
            &idp::sign("ed-1", false, &idp::claims(&sub, 60, json!({})))
        )
        .await,
        200
    );
}

#[tokio::test]
async fn a_key_file_or_jwks_that_cannot_be_used_stops_the_gateway_naming_the_setting() {
    let jwks = JwksServer::start(&[]).await;
    jwks.publish_raw("{\"keys\": 42}");
    let garbage =
        tempfile_path::write("-----BEGIN PUBLIC KEY-----\nbm9wZQ==\n-----END PUBLIC KEY-----\n");
    let garbage_path = garbage.0.to_string_lossy().into_owned();
    let empty = tempfile_path::write("not a key at all\n");
    let empty_path = empty.0.to_string_lossy().into_owned();
    for (setting, value) in [
        ("CHAT_JWT_PUBLIC_KEYS", garbage_path.as_str()),
        ("CHAT_JWT_PUBLIC_KEYS", empty_path.as_str()),
        ("CHAT_JWT_PUBLIC_KEYS", "/nonexistent/keys.pem"),
        ("CHAT_JWKS_URL", jwks.url.as_str()),
        ("CHAT_JWKS_URL", "ftp://idp.example/jwks.json"),
    ] {
        let stack = Stack::build(&e2e::nats_url(), 0, 1, &[(setting, value)]).await;
        let mut gw = Gateway::start_unready(&stack.config, 0);
        let exit = gw
            .process
            .exited_within(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("the gateway kept running with {setting}={value}"));
        assert!(!exit.success());
        let logs: String = std::fs::read_dir(&stack.config.logs)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .filter(|l| l.contains("Error:"))
            .collect();
        assert!(logs.contains(setting), "{setting}={value}: {logs}");
    }
}

#[tokio::test]
async fn session_refresh_keeps_a_connection_past_its_first_tokens_expiry() {
    let stack = Stack::start().await;
    let sub = uuid::Uuid::new_v4();
    let short = |ttl: i64| e2e::ws::token(sub, "Ann", chrono::Utc::now().timestamp() + ttl);
    let guest = Guest {
        token: short(3),
        id: sub.to_string(),
        name: "Ann".into(),
    };
    let mut ann = WsClient::connect(&stack.gateway().ws_url(), guest).await;
    let other = e2e::ws::token(
        uuid::Uuid::new_v4(),
        "Eve",
        chrono::Utc::now().timestamp() + 600,
    );
    assert_eq!(
        ann.refused("session:refresh", json!({"token": other}))
            .await,
        "forbidden"
    );
    assert_eq!(
        ann.refused("session:refresh", json!({"token": "nope"}))
            .await,
        "unauthorized"
    );
    let ack = ann
        .ok("session:refresh", json!({"token": short(600)}))
        .await;
    assert!(ack["expires_at"].as_str().is_some(), "{ack}");

    tokio::time::sleep(Duration::from_secs(5)).await;
    ann.join("still-here").await;

    // A refresh to a shorter life ends the connection then.
    ann.ok("session:refresh", json!({"token": short(2)})).await;
    assert_eq!(ann.closed().await, Some(4001));
}

fn hs256(claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn alg_none(claims: &serde_json::Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    )
}

#[tokio::test]
async fn profiles_come_from_the_token_or_user_update_and_show_wherever_the_user_appears() {
    let stack = Stack::two_gateways().await;
    let ann_id = uuid::Uuid::new_v4();
    let exp = chrono::Utc::now().timestamp() + 600;
    let token = |claims: serde_json::Value| hs256(&claims, e2e::ws::TEST_SECRET);
    let pic = "https://pics.example/ann.png";
    let ann_guest = Guest {
        token: token(
            json!({"sub": ann_id.to_string(), "name": "Ann", "avatar_url": pic, "exp": exp}),
        ),
        id: ann_id.to_string(),
        name: "Ann".into(),
    };
    let mut ann = WsClient::connect(&stack.gateways[0].ws_url(), ann_guest).await;
    assert_eq!(ann.ready["user"]["avatar_url"], pic);
    let mut bob = stack.connect_to(1, "Bob").await;
    assert_eq!(bob.ready["user"]["avatar_url"], serde_json::Value::Null);
    ann.join("faces").await;
    bob.join("faces").await;
    let t = ann.say("faces", "hi").await;
    let m = bob.persisted(&t).await;
    assert_eq!(
        m["sender"],
        json!({"id": ann_id, "name": "Ann", "avatar_url": pic})
    );

    // A picture that is not an http(s) URL is left out.
    let odd = uuid::Uuid::new_v4();
    let odd_guest = Guest {
        token: token(
            json!({"sub": odd.to_string(), "name": "Odd", "avatar_url": "javascript:alert(1)", "exp": exp}),
        ),
        id: odd.to_string(),
        name: "Odd".into(),
    };
    let odd_ws = WsClient::connect(&stack.gateways[1].ws_url(), odd_guest).await;
    assert_eq!(odd_ws.ready["user"]["avatar_url"], serde_json::Value::Null);

    for bad in [
        json!({"name": ""}),
        json!({"avatar_url": "ftp://x/y.png"}),
        json!({"avatar_url": 5}),
    ] {
        assert_eq!(
            ann.refused("user:update", bad.clone()).await,
            "bad_request",
            "{bad}"
        );
    }
    let new_pic = "https://pics.example/ann-2.png";
    let ack = ann
        .ok(
            "user:update",
            json!({"name": "Ann B", "avatar_url": new_pic}),
        )
        .await;
    assert_eq!(ack["user"]["name"], "Ann B");
    let updated = bob.expect_event("user:updated").await;
    assert_eq!(
        updated["data"]["user"],
        json!({"id": ann_id, "name": "Ann B", "avatar_url": new_pic})
    );
    let t = ann.say("faces", "new look").await;
    let m = bob.persisted(&t).await;
    assert_eq!(m["sender"]["name"], "Ann B");
    assert_eq!(m["sender"]["avatar_url"], new_pic);
    let page = bob.ok("history:fetch", json!({"room": "faces"})).await;
    assert_eq!(
        page["messages"][0]["sender"]["avatar_url"], pic,
        "as it was sent"
    );
    assert_eq!(page["messages"][1]["sender"]["avatar_url"], new_pic);
    let deadline = Instant::now() + e2e::WAIT;
    let members = loop {
        let ack = bob.ok("room:join", json!({"room": "faces"})).await;
        let me = ack["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["id"] == ann_id.to_string()).cloned())
            .unwrap_or_default();
        if me["avatar_url"] == new_pic {
            break me;
        }
        assert!(
            Instant::now() < deadline,
            "the new profile was never stored: {me}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(members["name"], "Ann B");

    // A later token that claims no picture keeps the one Ann set.
    drop(ann);
    let again = Guest {
        token: token(json!({"sub": ann_id.to_string(), "exp": exp})),
        id: ann_id.to_string(),
        name: "Ann B".into(),
    };
    let ann = WsClient::connect(&stack.gateways[1].ws_url(), again).await;
    assert_eq!(
        ann.ready["user"],
        json!({"id": ann_id, "name": "Ann B", "avatar_url": new_pic})
    );
}
