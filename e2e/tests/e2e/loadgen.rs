//! The load generator measures what it claims: a small run against the real
//! stack sends, sees every ack and event, and finds each message stored
//! once. (Speed itself is measured by `scripts/bench.sh`, never here.)

use e2e::Stack;

#[tokio::test]
async fn a_small_throughput_run_accounts_for_every_message() {
    let stack = Stack::start().await;
    let out = tempfile_path("loadgen.json");
    let status = tokio::process::Command::new(e2e::procs::bin("loadgen"))
        .args([
            "--url",
            &stack.gateway().url,
            "--database-url",
            &stack.db.url(),
            "--json",
            &out,
            "throughput",
            "--rooms",
            "2",
            "--users",
            "3",
            "--rate",
            "40",
            "--duration",
            "1",
            "--warmup",
            "0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .expect("loadgen runs");
    assert!(status.success(), "loadgen failed: {status}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("the JSON report"))
            .expect("JSON");
    let run = &report["sets"][0]["runs"][0];
    assert_eq!(report["scenario"], "throughput");
    assert_eq!(report["sets"][0]["rate"], 40.0, "{report}");
    assert!(report["sets"][0]["passes"].is_boolean(), "{report}");
    assert_eq!(run["sent"], 40);
    assert_eq!(run["acked"], 40, "{run}");
    assert_eq!(run["lost"], 0);
    assert_eq!(run["duplicates"], 0);
    assert_eq!(run["persisted"]["count"], 40, "each sender saw its own");
    // Two others in each room got every message.
    assert_eq!(run["fanout"]["count"], 80);
    assert!(run["ack"]["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(run["cpu_percent"]["loadgen"].is_number());
    let _ = std::fs::remove_file(&out);
}

fn tempfile_path(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("{}-{name}", uuid::Uuid::new_v4()))
        .to_string_lossy()
        .into_owned()
}
