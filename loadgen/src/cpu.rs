//! CPU time of the processes under test, read from `/proc` before and
//! after a run: where the machine's two cores went.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// A process to watch: `name=pid`, or `name=comm:<command>` for every
/// process of that command name (PostgreSQL's backends).
#[derive(Clone, Debug)]
pub struct Watch {
    name: String,
    target: Target,
}

#[derive(Clone, Debug)]
enum Target {
    Pid(u32),
    Comm(String),
}

impl std::str::FromStr for Watch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, target) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected name=pid or name=comm:<command>"))?;
        let target = match target.strip_prefix("comm:") {
            Some(comm) => Target::Comm(comm.to_owned()),
            None => Target::Pid(
                target
                    .parse()
                    .map_err(|_| format!("{target:?} is not a pid"))?,
            ),
        };
        Ok(Self {
            name: name.to_owned(),
            target,
        })
    }
}

/// CPU ticks used so far by each watched process, and by this one.
pub struct Sample {
    at: Instant,
    ticks: BTreeMap<String, u64>,
}

pub fn sample(watches: &[Watch]) -> Sample {
    let mut ticks = BTreeMap::new();
    for w in watches {
        let t = match &w.target {
            Target::Pid(pid) => ticks_of(*pid).unwrap_or(0),
            Target::Comm(comm) => pids_of(comm).into_iter().filter_map(ticks_of).sum(),
        };
        ticks.insert(w.name.clone(), t);
    }
    ticks.insert("loadgen".into(), ticks_of(std::process::id()).unwrap_or(0));
    Sample {
        at: Instant::now(),
        ticks,
    }
}

/// Each process's CPU between two samples, in percent of one core.
pub fn between(before: &Sample, after: &Sample) -> Value {
    let secs = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let mut out = serde_json::Map::new();
    for (name, t) in &after.ticks {
        let used = t.saturating_sub(before.ticks.get(name).copied().unwrap_or(0));
        let percent = used as f64 / TICKS_PER_S / secs * 100.0;
        out.insert(name.clone(), json!((percent * 10.0).round() / 10.0));
    }
    Value::Object(out)
}

/// Memory resident of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn ticks_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count
    // fields after its closing one. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn pids_of(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_sampled() {
        let before = sample(&[]);
        // Burn a little CPU so the tick count can move.
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let after = sample(&[]);
        assert!(after.ticks["loadgen"] >= before.ticks["loadgen"]);
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert!("pg=comm:postgres".parse::<Watch>().is_ok());
        assert!("gw=12".parse::<Watch>().is_ok());
        assert!("gw".parse::<Watch>().is_err());
    }
}
