//! CloudWatch metrics as Embedded Metric Format (EMF) lines: one JSON line per
//! invocation on stdout, which CloudWatch Logs turns into metrics without API calls.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// Metric namespace in CloudWatch.
pub const NAMESPACE: &str = "fhir-ws";

/// Counters of one invocation, shared by concurrent tasks.
#[derive(Debug)]
pub struct Metrics {
    function: String,
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Empty counters for `function` (the `Function` dimension).
    pub fn new(function: &str) -> Self {
        Self { function: function.to_owned(), counts: Mutex::new(BTreeMap::new()) }
    }

    /// Adds `count` to the metric `name` (a zero still reports the metric).
    pub fn add(&self, name: &'static str, count: u64) {
        *self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(name).or_insert(0) += count;
    }

    /// The current value of `name`.
    pub fn get(&self, name: &str) -> u64 {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).copied().unwrap_or(0)
    }

    /// The EMF document for these counters at time `now`.
    pub fn emf(&self, now: DateTime<Utc>) -> Value {
        let counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let definitions: Vec<Value> = counts.keys().map(|name| json!({"Name": name, "Unit": "Count"})).collect();
        let mut document = Map::new();
        document.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": now.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": definitions,
                }],
            }),
        );
        document.insert("Function".to_owned(), json!(self.function));
        for (name, count) in counts {
            document.insert(name.to_owned(), json!(count));
        }
        Value::Object(document)
    }

    /// Writes the EMF line to stdout, where the Lambda runtime sends it to CloudWatch Logs.
    /// A closed stdout (e.g. a local run piped into `head`) loses the line, never the process.
    pub fn emit(&self, now: DateTime<Utc>) {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), "{}", self.emf(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_declare_every_counted_metric() {
        let metrics = Metrics::new("fanout");
        metrics.add("Delivered", 3);
        metrics.add("Delivered", 2);
        metrics.add("Gone", 0);
        let line = metrics.emf(DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default());
        assert_eq!(line["_aws"]["Timestamp"], 1_800_000_000_000_i64);
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "fhir-ws");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Function"]]));
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "Delivered", "Unit": "Count"}, {"Name": "Gone", "Unit": "Count"}])
        );
        assert_eq!(
            (line["Function"].clone(), line["Delivered"].clone(), line["Gone"].clone()),
            (json!("fanout"), json!(5), json!(0))
        );
    }
}
