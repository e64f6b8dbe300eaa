//! The web client in real browsers: Debian's Chromium, driven by
//! playwright-core from `e2e/browser/chat.mjs`, and Firefox ESR, driven over
//! WebDriver by geckodriver from `e2e/browser/firefox.mjs`: two users each.

use std::process::Stdio;
use std::time::Duration;

use e2e::{Gateway, Stack};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn two_users_chat_in_the_web_client_through_a_gateway_restart() {
    let mut stack = Stack::two_gateways().await;
    // Carol talks through the second gateway while the first restarts.
    let mut carol = stack.connect_to(1, "Carol").await;
    carol.join("lobby").await;

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/browser");
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/artifacts/browser");
    assert!(
        std::path::Path::new(&format!("{dir}/node_modules/playwright-core")).exists(),
        "playwright-core is not installed: run `npm ci --prefix e2e/browser` (scripts/test.sh does)"
    );
    let mut node = Command::new("node")
        .args(["chat.mjs", &stack.gateways[0].url, shots])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (Node.js is needed for the browser test)");
    let mut stdin = node.stdin.take().expect("piped stdin");
    let mut lines = BufReader::new(node.stdout.take().expect("piped stdout")).lines();

    // The script asks for what only the test can do to the stack, one line
    // at a time, and is answered with a line when it is done.
    let mut said = Vec::new();
    let mut restarted = false;
    let mut paused = None;
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(150), lines.next_line())
        .await
        .expect("the browser script says something within 150 s")
    {
        let answer = match line.as_str() {
            "PAUSE PERSISTER" => {
                paused = Some(stack.persisters.len());
                for p in stack.persisters.drain(..) {
                    p.process.stop().await;
                }
                "PAUSED"
            }
            "RESUME PERSISTER" => {
                for _ in 0..paused.take().expect("the persister was paused") {
                    stack.add_persister().await;
                }
                "RESUMED"
            }
            "RESTART" => {
                restart_first_gateway(&mut stack, &mut carol).await;
                restarted = true;
                "RESTARTED"
            }
            _ => {
                said.push(line);
                continue;
            }
        };
        stdin
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .expect("answer the script");
        stdin.flush().await.expect("answer the script");
    }
    let status = node.wait().await.expect("the script exits");
    assert!(
        status.success(),
        "the browser script failed: {said:?} (screenshots in {shots})"
    );
    assert!(restarted, "the script went through the gateway restart");
    assert_eq!(said.last().map(String::as_str), Some("PASS"), "{said:?}");
}

/// Restarts the first gateway on its port; meanwhile Carol, on the second,
/// says something the browser tabs can only get by catching up.
async fn restart_first_gateway(stack: &mut Stack, carol: &mut e2e::WsClient) {
    let port = stack.gateways[0].port;
    let gw = stack.gateways.remove(0);
    gw.process.stop().await;
    let t = carol.say("lobby", "said while you were away").await;
    carol.persisted(&t).await;
    stack
        .gateways
        .insert(0, Gateway::start(&stack.config, port).await);
}

/// A geckodriver on a port of its own: one drives one Firefox.
async fn geckodriver() -> (tokio::process::Child, String) {
    let bin = std::env::var("CHAT_GECKODRIVER").unwrap_or_else(|_| "geckodriver".into());
    let port = e2e::procs::free_port();
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{bin} does not run ({e}): scripts/test.sh installs geckodriver and firefox-esr")
        });
    let url = format!("http://127.0.0.1:{port}");
    e2e::eventually("geckodriver to listen", || async {
        e2e::http()
            .get(format!("{url}/status"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    (child, url)
}

#[tokio::test]
async fn two_users_chat_in_firefox_in_a_wide_and_a_narrow_window() {
    let stack = Stack::start().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/browser");
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/artifacts/browser");
    let (_ann_driver, ann) = geckodriver().await;
    let (_bob_driver, bob) = geckodriver().await;
    let run = Command::new("node")
        .args(["firefox.mjs", &stack.gateway().url, shots, &ann, &bob])
        .current_dir(dir)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Firefox script finished within 120 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("PASS"),
        "the Firefox script failed: {stdout}{} (screenshots in {shots})",
        String::from_utf8_lossy(&output.stderr)
    );
}
