//! Latency histograms, run summaries and the medians of several runs.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

pub fn histogram() -> Histogram<u64> {
    // Microseconds, up to a minute, three significant figures.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// p50/p90/p99/p999/max of a histogram in microseconds, as milliseconds.
pub fn summary(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

/// One line of a latency summary.
pub fn line(name: &str, h: &Value) -> String {
    let f = |k: &str| h[k].as_f64().unwrap_or(0.0);
    format!(
        "  {name:<10} n={:<8} p50={:>8.2} ms  p90={:>8.2}  p99={:>8.2}  p999={:>8.2}  max={:>8.2}",
        h["count"],
        f("p50_ms"),
        f("p90_ms"),
        f("p99_ms"),
        f("p999_ms"),
        f("max_ms")
    )
}

/// The element-wise median of several runs' results: every number is the
/// median of that number over the runs; anything else is the first run's.
pub fn median(runs: &[Value]) -> Value {
    match runs.first() {
        None => Value::Null,
        Some(Value::Object(first)) => Value::Object(
            first
                .iter()
                .map(|(k, v)| {
                    let column: Vec<Value> = runs.iter().map(|r| r[k].clone()).collect();
                    (k.clone(), median_of(v, &column))
                })
                .collect(),
        ),
        Some(v) => v.clone(),
    }
}

fn median_of(first: &Value, column: &[Value]) -> Value {
    match first {
        Value::Number(_) => {
            let mut xs: Vec<f64> = column.iter().filter_map(Value::as_f64).collect();
            xs.sort_by(f64::total_cmp);
            match xs.len() {
                0 => Value::Null,
                n if n % 2 == 1 => json!(xs[n / 2]),
                n => json!((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
            }
        }
        Value::Object(_) => median(column),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_runs_is_taken_number_by_number() {
        let runs = [
            json!({"rate": 3.0, "ack": {"p99_ms": 9.0}, "name": "a"}),
            json!({"rate": 1.0, "ack": {"p99_ms": 1.0}, "name": "b"}),
            json!({"rate": 2.0, "ack": {"p99_ms": 5.0}, "name": "c"}),
        ];
        assert_eq!(
            median(&runs),
            json!({"rate": 2.0, "ack": {"p99_ms": 5.0}, "name": "a"})
        );
    }
}
