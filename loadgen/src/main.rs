//! `loadgen`: drives a running chat deployment the way clients do and
//! measures it.
//!
//! Sends are paced open-loop: send `i` is due at `start + i / rate`, and
//! every latency is measured from that due time, not from when the send
//! went out, so a stall shows up as latency instead of hiding as fewer
//! sends (no coordinated omission).

mod ceiling;
mod client;
mod connections;
mod cpu;
mod report;
mod search;
mod throughput;

use clap::Parser;
use serde_json::{json, Value};
use shared::config::NatsConfig;

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "Load generator for the chat backend")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

/// What every scenario takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Gateway base URL(s), comma separated; users are spread over them.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Check every acked message in this database at the end (and count
    /// rows there for the pipeline scenarios).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Write the results as JSON to this file.
    #[arg(long, global = true)]
    json: Option<String>,
    /// Runs of the scenario; with more than one, the median of each figure
    /// is reported too.
    #[arg(long, global = true, default_value_t = 1)]
    runs: usize,
    /// Processes whose CPU to report: name=pid, or name=comm:<command> for
    /// every process of that name. Repeatable.
    #[arg(long = "watch", global = true)]
    watch: Vec<cpu::Watch>,
    /// Seconds of sending at the first rate before anything is measured,
    /// on users of their own, so that neither server is measured cold
    /// (JIT compilation, pools, caches).
    #[arg(long, global = true, default_value_t = 5.0)]
    warmup: f64,
    /// What the server at --url speaks: the product, or the Socket.IO peer.
    #[arg(long, global = true, value_enum, default_value_t = client::Protocol::Chat)]
    protocol: client::Protocol,
}

impl Common {
    fn bases(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_owned())
            .collect()
    }
}

#[derive(clap::Subcommand, Debug)]
enum Scenario {
    /// R rooms of U users; the total rate spread over every user.
    Throughput {
        #[arg(long, default_value_t = 50)]
        rooms: usize,
        /// Users per room.
        #[arg(long, default_value_t = 10)]
        users: usize,
        /// Messages per second, in all; several, comma separated, run one
        /// after another and report the highest that passes.
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        rate: Vec<f64>,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// One room of N members, every member sending in turn.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        members: usize,
        #[arg(long, value_delimiter = ',', default_value = "10")]
        rate: Vec<f64>,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// N idle connections on one gateway; its memory per connection.
    Connections {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Seconds to hold them open before measuring.
        #[arg(long, default_value_t = 10.0)]
        hold: f64,
        /// The gateway's process id, to read its memory.
        #[arg(long)]
        gateway_pid: u32,
    },
    /// Searches over a database of many messages, seeded straight into
    /// PostgreSQL (needs --database-url, with write access).
    Search {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 200)]
        rooms: usize,
        /// Rooms the searching user is a member of.
        #[arg(long, default_value_t = 20)]
        member_of: usize,
        #[arg(long, default_value_t = 2000)]
        queries: usize,
        /// Searches in flight at once (1: the latency one user sees).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
    },
    /// The limits the product is compared with.
    Ceiling {
        #[command(subcommand)]
        part: Ceiling,
    },
    /// Publishes N jobs with the persister stopped (start it on
    /// "backlog published"), then times the catch-up.
    Backlog {
        #[command(flatten)]
        nats: NatsConfig,
        #[arg(long, default_value_t = 50)]
        rooms: usize,
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
        #[arg(long, default_value_t = 2000)]
        in_flight: usize,
    },
}

#[derive(clap::Subcommand, Debug)]
enum Ceiling {
    /// Pipelined JetStream publishes of job-sized payloads, nothing else.
    Publish {
        #[command(flatten)]
        nats: NatsConfig,
        #[arg(long, default_value_t = 200_000)]
        count: usize,
        #[arg(long, default_value_t = 2000)]
        in_flight: usize,
    },
    /// Jobs published straight to the stream and written by the persister:
    /// the pipeline without WebSockets or gateway.
    Pipeline {
        #[command(flatten)]
        nats: NatsConfig,
        #[arg(long, default_value_t = 50)]
        rooms: usize,
        #[arg(long, default_value_t = 200_000)]
        count: usize,
        #[arg(long, default_value_t = 2000)]
        in_flight: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::net::install_tls_provider();
    let Cli { common, scenario } = Cli::parse();
    let runs = match &scenario {
        // One-shot scenarios: the stack's state is part of the measure.
        Scenario::Connections { .. } | Scenario::Backlog { .. } | Scenario::Search { .. } => 1,
        _ => common.runs.max(1),
    };
    let rates = match &scenario {
        Scenario::Throughput { rate, .. } | Scenario::Fanout { rate, .. } => {
            rate.iter().copied().map(Some).collect()
        }
        _ => vec![None],
    };
    if let (true, Some(Some(first))) = (common.warmup > 0.0, rates.first()) {
        let result = once(&common, &scenario, Some(*first), Some(common.warmup)).await?;
        eprintln!(
            "loadgen: warm-up of {} s at {first} msg/s done (acked {}, persisted p99 {} ms), not counted",
            common.warmup, result["acked"], result["persisted"]["p99_ms"]
        );
    }
    let mut sets = Vec::with_capacity(rates.len());
    for rate in rates {
        let mut results = Vec::with_capacity(runs);
        for run in 1..=runs {
            let result = once(&common, &scenario, rate, None).await?;
            say(&format!(
                "run {run} of {runs}: {}",
                human(&scenario, &result)
            ));
            results.push(result);
        }
        let result = if runs > 1 {
            let median = report::median(&results);
            say(&format!(
                "median of {runs} runs: {}",
                human(&scenario, &median)
            ));
            median
        } else {
            results[0].clone()
        };
        let mut set = json!({ "rate": rate, "runs": results, "result": result });
        if rates_swept(&scenario) {
            set["passes"] = json!(throughput::passes(&set["result"]));
        }
        sets.push(set);
    }
    let mut out = json!({ "scenario": scenario_name(&scenario), "sets": sets });
    if rates_swept(&scenario) {
        let passing = throughput::highest_passing(&sets);
        say(&format!(
            "highest rate passing (persisted p99 < {} ms, nothing lost or refused): {}",
            throughput::PASS_P99_MS,
            passing.map_or("none".to_owned(), |r| format!("{r} msg/s"))
        ));
        out["highest_passing"] = json!(passing);
    }
    if let Some(path) = &common.json {
        std::fs::write(path, serde_json::to_string_pretty(&out)?)?;
    }
    Ok(())
}

fn rates_swept(scenario: &Scenario) -> bool {
    matches!(
        scenario,
        Scenario::Throughput { .. } | Scenario::Fanout { .. }
    )
}

/// One run of `scenario`; `rate` is the sweep's current rate, `seconds`
/// stands in for the scenario's duration (a warm-up).
async fn once(
    common: &Common,
    scenario: &Scenario,
    rate: Option<f64>,
    seconds: Option<f64>,
) -> anyhow::Result<Value> {
    let rate = rate.unwrap_or_default();
    match scenario {
        Scenario::Throughput {
            rooms,
            users,
            duration,
            ..
        } => {
            let shape = throughput::Shape {
                rooms: *rooms,
                users: *users,
                rate,
                duration: seconds.unwrap_or(*duration),
            };
            throughput::run(common, &shape).await
        }
        Scenario::Fanout {
            members, duration, ..
        } => {
            let shape = throughput::Shape {
                rooms: 1,
                users: *members,
                rate,
                duration: seconds.unwrap_or(*duration),
            };
            throughput::run(common, &shape).await
        }
        Scenario::Connections {
            count,
            hold,
            gateway_pid,
        } => connections::run(common, *count, *hold, *gateway_pid).await,
        Scenario::Search {
            messages,
            rooms,
            member_of,
            queries,
            concurrency,
        } => {
            let shape = search::Shape {
                messages: *messages,
                rooms: *rooms,
                member_of: *member_of,
                queries: *queries,
                concurrency: *concurrency,
            };
            search::run(common, &shape).await
        }
        Scenario::Ceiling {
            part:
                Ceiling::Publish {
                    nats,
                    count,
                    in_flight,
                },
        } => ceiling::publish(common, nats, *count, *in_flight).await,
        Scenario::Ceiling {
            part:
                Ceiling::Pipeline {
                    nats,
                    rooms,
                    count,
                    in_flight,
                },
        } => ceiling::pipeline(common, nats, *rooms, *count, *in_flight, false).await,
        Scenario::Backlog {
            nats,
            rooms,
            count,
            in_flight,
        } => ceiling::pipeline(common, nats, *rooms, *count, *in_flight, true).await,
    }
}

fn scenario_name(scenario: &Scenario) -> &'static str {
    match scenario {
        Scenario::Throughput { .. } => "throughput",
        Scenario::Fanout { .. } => "fanout",
        Scenario::Connections { .. } => "connections",
        Scenario::Search { .. } => "search",
        Scenario::Ceiling {
            part: Ceiling::Publish { .. },
        } => "ceiling publish",
        Scenario::Ceiling {
            part: Ceiling::Pipeline { .. },
        } => "ceiling pipeline",
        Scenario::Backlog { .. } => "backlog",
    }
}

fn human(scenario: &Scenario, result: &Value) -> String {
    match scenario {
        Scenario::Throughput { .. } | Scenario::Fanout { .. } => throughput::human(result),
        Scenario::Connections { .. } => connections::human(result),
        Scenario::Search { .. } => search::human(result),
        _ => ceiling::human(scenario_name(scenario), result),
    }
}

/// The summary is this program's output.
#[allow(clippy::print_stdout)]
fn say(text: &str) {
    println!("{text}");
}
