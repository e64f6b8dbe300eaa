//! The operations guide and dashboard match what the binaries expose.

use std::collections::BTreeSet;

use e2e::Stack;

/// Metric names a `/metrics` page declares (`# TYPE <name> <type>`).
async fn exposed(base: &str) -> BTreeSet<String> {
    let text = e2e::http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn repo_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The prefixes of the binaries' own metrics, and of the process-level
/// ones both expose (heap and runtime).
const PREFIXES: [&str; 4] = ["gateway_", "persister_", "heap_", "runtime_"];

/// Names like `gateway_x_total` or `persister_y` in a text.
fn names_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| PREFIXES.iter().any(|p| w.starts_with(p)))
        // A histogram's series are the metric's name plus a suffix.
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn every_metric_is_documented_and_the_dashboard_uses_only_real_ones() {
    let stack = Stack::start().await;
    // Traffic, so the histograms have been recorded.
    let mut ann = stack.connect("Ann").await;
    ann.join("ops").await;
    let t = ann.say("ops", "hello").await;
    ann.persisted(&t).await;

    let mut metrics = exposed(&stack.gateway().url).await;
    metrics.extend(exposed(&stack.persisters[0].url).await);
    let guide = repo_file("docs/operations.md");
    let documented: BTreeSet<String> = guide
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(names_in)
        .collect();
    let undocumented: Vec<&String> = metrics.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from docs/operations.md: {undocumented:?}"
    );
    let gone: Vec<&String> = documented
        .iter()
        .filter(|d| d.ends_with("_total") || d.ends_with("_seconds") || d.ends_with("_size"))
        .filter(|d| !metrics.contains(*d))
        .collect();
    assert!(
        gone.is_empty(),
        "documented metrics nobody exposes: {gone:?}"
    );

    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("docs/grafana-dashboard.json")).expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6, "a dashboard of {} panels", panels.len());
    let used: BTreeSet<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .flat_map(|t| names_in(t["expr"].as_str().unwrap_or_default()))
        .collect();
    let unknown: Vec<&String> = used.difference(&metrics).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics nobody exposes: {unknown:?}"
    );
}

#[tokio::test]
async fn the_readmes_shell_example_works_as_printed() {
    let stack = Stack::start().await;
    let readme = repo_file("README.md");
    let block = readme
        .split("Try it from a shell")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("README has the shell example");
    let host = stack.gateway().url.trim_start_matches("http://").to_owned();
    let script = block.replace("localhost:8080", &host);
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .await
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the example failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("\"code\""), "an error answer: {stdout}");
    assert!(
        stdout.contains(r#""room":"lobby""#),
        "the join answer: {stdout}"
    );
    assert!(stdout.contains(r#""temp_id""#), "the send answer: {stdout}");
    assert!(
        stdout.contains(r#""text":"hello""#) && stdout.contains(r#""name":"Ann""#),
        "the history shows the message: {stdout}"
    );
}
