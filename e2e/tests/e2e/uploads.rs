//! Files: uploaded to the gateway's store, served with their type to the
//! uploader and to members of a room where they were sent, to nobody else;
//! bad uploads refused with a clear error and nothing stored.

use e2e::{Stack, WsClient};
use serde_json::{json, Value};

/// A file's bytes: a PNG signature and some content.
fn picture() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..5000u32).map(|i| (i * 7 % 251) as u8));
    bytes
}

async fn upload(
    base: &str,
    who: &WsClient,
    kind: Option<&str>,
    name: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = e2e::http()
        .post(format!("{base}/v1/uploads"))
        .query(&[("name", name)])
        .bearer_auth(&who.user.token)
        .body(body);
    if let Some(kind) = kind {
        req = req.header("content-type", kind);
    }
    let resp = req.send().await.expect("upload");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `GET` the file at `url` through gateway `base`: status, type, bytes.
async fn fetch(base: &str, url: &str, who: &WsClient) -> (u16, String, Vec<u8>) {
    let path = &url[url.find("/v1/uploads/").expect("an upload URL")..];
    let resp = e2e::http()
        .get(format!("{base}{path}"))
        .bearer_auth(&who.user.token)
        .send()
        .await
        .expect("fetch");
    let status = resp.status().as_u16();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        kind,
        resp.bytes().await.unwrap_or_default().to_vec(),
    )
}

/// Files the stack's store holds (bytes and records).
fn stored(stack: &Stack) -> usize {
    std::fs::read_dir(stack.config.logs.join("uploads").join("uploads"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_file_reaches_the_members_of_rooms_it_is_sent_in_on_any_gateway_and_nobody_else() {
    let stack = Stack::two_gateways().await;
    let (g0, g1) = (&stack.gateways[0].url, &stack.gateways[1].url);
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    let eve = stack.connect_to(1, "Eve").await;
    ann.join("pics").await;
    bob.join("pics").await;

    let (status, file) = upload(g0, &ann, Some("image/png"), "cat 1.png", picture()).await;
    assert_eq!(status, 201, "{file}");
    assert_eq!(file["name"], "cat 1.png");
    assert_eq!(file["type"], "image/png");
    assert_eq!(file["size"], picture().len());
    let url = file["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{g0}/v1/uploads/")), "{url}");

    // The uploader at once, on either gateway; nobody else yet.
    assert_eq!(
        fetch(g1, &url, &ann).await,
        (200, "image/png".into(), picture())
    );
    assert_eq!(fetch(g1, &url, &bob).await.0, 404);

    // Sent in a room: its members may read it, others not.
    let t = ann
        .ok(
            "message:send",
            json!({"room": "pics", "text": "my cat", "kind": "image", "attachments": [file]}),
        )
        .await["temp_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = bob.persisted(&t).await;
    assert_eq!(sent["attachments"][0]["url"], url.as_str());
    let (status, kind, bytes) = fetch(g1, &url, &bob).await;
    assert_eq!(
        (status, kind.as_str(), bytes == picture()),
        (200, "image/png", true)
    );
    assert_eq!(fetch(g0, &url, &eve).await.0, 404, "not a member");

    // Once the message is deleted, only the uploader.
    ann.ok("message:delete", json!({"room": "pics", "id": sent["id"]}))
        .await;
    bob.find("the delete", |v| v["type"] == "message:deleted")
        .await;
    assert_eq!(fetch(g0, &url, &bob).await.0, 404);
    assert_eq!(fetch(g0, &url, &ann).await.0, 200);

    // Anything but a picture, sound or video is a download, never a page.
    let (status, page) = upload(
        g1,
        &bob,
        Some("text/html; charset=utf-8"),
        "x.html",
        b"<script>alert(1)</script>".to_vec(),
    )
    .await;
    assert_eq!(
        (status, page["type"].as_str()),
        (201, Some("text/html")),
        "{page}"
    );
    let resp = e2e::http()
        .get(page["url"].as_str().unwrap())
        .bearer_auth(&bob.user.token)
        .send()
        .await
        .unwrap();
    let header = |name: &str| resp.headers()[name].to_str().unwrap().to_owned();
    assert!(header("content-disposition").starts_with("attachment"));
    assert!(header("content-security-policy").contains("sandbox"));
    assert_eq!(header("x-content-type-options"), "nosniff");
}

#[tokio::test]
async fn bad_uploads_get_clear_errors_and_store_nothing() {
    let stack = Stack::build(
        &e2e::nats_url(),
        1,
        1,
        &[("CHAT_UPLOAD_MAX_BYTES", "100000")],
    )
    .await;
    let g = &stack.gateway().url;
    let ann = stack.connect("Ann").await;
    for (kind, name, body, status, code) in [
        (None, "a.png", picture(), 400, "bad_request"),
        (Some("png"), "a.png", picture(), 400, "bad_request"),
        (Some("image/png"), "a.png", Vec::new(), 400, "bad_request"),
        (Some("image/png"), "../a.png", picture(), 400, "bad_request"),
        (
            Some("image/png"),
            "a.png",
            vec![7u8; 100_001],
            413,
            "too_large",
        ),
    ] {
        let (got, body) = upload(g, &ann, kind, name, body).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{kind:?} {name}: {body}"
        );
    }
    // Over the limit without a declared length: refused once it passes.
    let chunks = futures::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 10_000]))),
    );
    let resp = e2e::http()
        .post(format!("{g}/v1/uploads"))
        .bearer_auth(&ann.user.token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let anonymous = e2e::http()
        .post(format!("{g}/v1/uploads"))
        .header("content-type", "image/png")
        .body(picture())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(stored(&stack), 0, "nothing was stored");

    // Exactly at the limit is fine; unknown and malformed ids are not found.
    let (status, _) = upload(
        g,
        &ann,
        Some("application/pdf"),
        "doc.pdf",
        vec![1u8; 100_000],
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(stored(&stack), 2, "the bytes and their record");
    for id in [uuid::Uuid::now_v7().to_string(), "not-an-id".into()] {
        let (status, _, _) = fetch(g, &format!("/v1/uploads/{id}"), &ann).await;
        assert_eq!(status, 404, "{id}");
    }
}
