//! The production compose file is valid (no Docker engine runs here, so
//! `docker-compose config` is the check).

use std::process::Command;

fn compose_config(env: &[(&str, &str)]) -> std::process::Output {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config"])
        .current_dir(root)
        .env_remove("CHAT_JWT_SECRET")
        .env_remove("POSTGRES_PASSWORD")
        .env_remove("CHAT_GATEWAY_DB_PASSWORD")
        .envs(env.iter().copied())
        .output()
        .expect("docker-compose is installed (Debian package docker-compose; scripts/test.sh installs it)")
}

#[test]
fn docker_compose_accepts_the_file_and_demands_the_secrets() {
    let ok = compose_config(&[
        ("CHAT_JWT_SECRET", "s"),
        ("POSTGRES_PASSWORD", "p"),
        ("CHAT_GATEWAY_DB_PASSWORD", "g"),
    ]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Production shape: a three-node NATS cluster with an R3 stream, two
    // persisters, two gateways behind a balancer.
    for service in [
        "nats-1:",
        "nats-2:",
        "nats-3:",
        "postgres:",
        "persister-1:",
        "persister-2:",
        "gateway-1:",
        "gateway-2:",
        "balancer:",
    ] {
        assert!(
            out.contains(&format!("\n  {service}\n")),
            "service {service} missing:\n{out}"
        );
    }
    assert!(
        out.contains("CHAT_STREAM_REPLICAS: '3'") || out.contains("CHAT_STREAM_REPLICAS: \"3\""),
        "an R3 stream:\n{out}"
    );
    assert!(
        out.contains("nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222"),
        "every node in NATS_URL"
    );
    assert!(
        out.contains("nats:2.15.1-alpine"),
        "NATS pinned to the tested release"
    );

    // Every service of the project's image builds it rather than pulling
    // `chat:latest` from a registry that never had it.
    let mut blocks: Vec<String> = Vec::new();
    for line in out.lines() {
        let name = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'));
        let top = !line.starts_with(' ')
            || name.is_some_and(|n| {
                !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        match blocks.last_mut() {
            Some(block) if !top => {
                block.push('\n');
                block.push_str(line);
            }
            _ => blocks.push(line.to_owned()),
        }
    }
    let chat: Vec<&String> = blocks
        .iter()
        .filter(|b| b.contains("image: chat:latest"))
        .collect();
    assert_eq!(chat.len(), 4, "two persisters and two gateways:\n{out}");
    for service in chat {
        let name = service.lines().next().unwrap_or_default();
        assert!(
            service.contains("build:"),
            "service {name} would pull chat:latest:\n{service}"
        );
    }

    let missing = compose_config(&[]);
    assert!(!missing.status.success(), "runs without a JWT secret");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("CHAT_JWT_SECRET")
            || String::from_utf8_lossy(&missing.stderr).contains("POSTGRES_PASSWORD")
    );
}

#[test]
fn compose_pins_the_nats_release_the_scripts_install() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let lib = std::fs::read_to_string(format!("{root}/scripts/lib.sh")).unwrap();
    let compose = std::fs::read_to_string(format!("{root}/docker-compose.yml")).unwrap();
    let version = lib
        .lines()
        .find_map(|l| l.strip_prefix("NATS_VERSION=\""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("NATS_VERSION in scripts/lib.sh");
    assert!(
        compose.contains(&format!("image: nats:{version}-alpine")),
        "compose pins nats:{version}"
    );
}
