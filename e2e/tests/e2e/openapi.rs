//! The OpenAPI document against the live gateway: schemathesis calls every
//! documented endpoint with generated requests, bad bodies and bad
//! parameters included, and each answer must be documented (status, media
//! type, body schema) and never a server error.

use std::time::Duration;

use e2e::Stack;
use serde_json::Value;

const KEY: &str = "schema-key";

#[tokio::test]
async fn every_documented_endpoint_answers_as_documented_and_never_with_a_server_error() {
    let st = std::env::var("CHAT_TEST_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!("CHAT_TEST_SCHEMATHESIS is not set: the path of schemathesis's `st` (scripts/test.sh installs it into .tools/)")
    });
    let stack = Stack::build(
        &e2e::nats_url(),
        1,
        1,
        &[
            ("CHAT_API_KEYS", KEY),
            ("GATEWAY_RATE_PER_S", "1000000"),
            ("GATEWAY_RATE_BURST", "1000000"),
        ],
    )
    .await;
    let base = stack.gateway().url.clone();
    let doc: Value = e2e::http()
        .get(format!("{base}/v1/openapi.json"))
        .send()
        .await
        .expect("the document is served")
        .json()
        .await
        .expect("it is JSON");
    assert!(doc["openapi"]
        .as_str()
        .unwrap_or_default()
        .starts_with("3.1"));
    let ann = e2e::guest(&base, Some("Ann")).await;
    // A room the token's user is in, so member paths get past the check.
    e2e::http()
        .post(format!("{base}/v1/rooms/lobby/join"))
        .bearer_auth(&ann.token)
        .send()
        .await
        .expect("join");

    let report = stack.config.logs.join("schemathesis.xml");
    let run = tokio::process::Command::new(&st)
        .args([
            "run",
            &format!("{base}/v1/openapi.json"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection",
            "--header",
            &format!("Authorization: Bearer {}", ann.token),
            "--header",
            &format!("X-Api-Key: {KEY}"),
            "--max-examples",
            "40",
            "--seed",
            "20261203",
            // One worker: hypothesis's lambda descriptions are not
            // thread-safe on Python 3.11 (a SystemError from `ast.parse`).
            "--workers",
            "1",
            "--no-color",
            "--report",
            "junit",
            "--report-junit-path",
        ])
        .arg(&report)
        // Its cache of findings goes with the test's logs, not the tree.
        .current_dir(&stack.config.logs)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis finished within 10 minutes")
        .expect("schemathesis runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    // It tested every operation, not none.
    let operations = doc["paths"]
        .as_object()
        .map(|p| {
            p.values()
                .map(|m| m.as_object().map_or(0, |m| m.len()))
                .sum::<usize>()
        })
        .unwrap_or(0);
    assert!(operations >= 19, "{operations} operations documented");
    let junit = std::fs::read_to_string(&report).expect("schemathesis wrote its report");
    let tested: usize = junit
        .split_once("tests=\"")
        .and_then(|(_, rest)| rest.split('"').next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        tested >= operations - 1,
        "schemathesis tested {tested} of {operations} operations:\n{text}"
    );
}
