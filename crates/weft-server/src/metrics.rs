//! The agent's metrics, kept in memory as Consul's agent keeps them (go-metrics' in-memory sink): counters and
//! samples (timings, in milliseconds) are aggregated per 10-second interval, the last six intervals are kept, and
//! `/v1/agent/metrics` shows the interval under way. Gauges hold their last value. For Prometheus, counters and
//! samples are also summed since start (a counter, and a summary's `_sum` and `_count`).
//!
//! Names carry Consul's `consul.` prefix so that existing dashboards and alerts find them. Labels only ever take
//! values from fixed sets (route patterns, methods), so the number of series is bounded.

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// go-metrics' defaults for Consul's in-memory sink.
const INTERVAL: Duration = Duration::from_secs(10);
const RETAINED: usize = 6;
/// Most series of one kind; a new one beyond it is dropped (and counted), never grown into.
const MAX_SERIES: usize = 4096;

pub type Labels = Vec<(&'static str, String)>;

/// A series: a name and its labels.
type Key = (&'static str, Labels);
/// HTTP timings by (method, route pattern): recorded on every request, so kept apart and looked up without
/// allocating.
type HttpKey = (&'static str, &'static str);

/// The HTTP timing series by method and route pattern. Their keys come from the route table, never from a request,
/// so SipHash's defence against crafted keys buys nothing here, and it was the largest cost `time_http` added to
/// every request: FNV-1a instead.
type HttpMap<V> = HashMap<HttpKey, V, std::hash::BuildHasherDefault<Fnv>>;

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Aggregate {
    count: u64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
}

impl Aggregate {
    fn add(&mut self, v: f64) {
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        if self.count == 0 || v > self.max {
            self.max = v;
        }
        self.count += 1;
        self.sum += v;
        self.sum_sq += v * v;
    }

    fn json(&self, name: &str, labels: &Labels, seconds: f64) -> Value {
        let n = self.count as f64;
        let mean = if n > 0.0 { self.sum / n } else { 0.0 };
        let var = if n > 1.0 {
            ((self.sum_sq - n * mean * mean) / (n - 1.0)).max(0.0)
        } else {
            0.0
        };
        json!({
            "Name": name, "Count": self.count, "Rate": self.sum / seconds.max(1e-9), "Sum": self.sum,
            "Min": self.min, "Max": self.max, "Mean": mean, "Stddev": var.sqrt(), "Labels": label_map(labels),
        })
    }
}

fn label_map(labels: &Labels) -> BTreeMap<&'static str, &str> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[derive(Debug)]
struct Interval {
    began: Instant,
    start: SystemTime,
    counters: BTreeMap<Key, Aggregate>,
    samples: BTreeMap<Key, Aggregate>,
    http: HttpMap<Aggregate>,
}

impl Interval {
    fn new() -> Interval {
        Interval {
            began: Instant::now(),
            start: SystemTime::now(),
            counters: BTreeMap::new(),
            samples: BTreeMap::new(),
            http: HttpMap::default(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    current: Interval,
    /// Finished intervals, oldest first.
    history: VecDeque<Interval>,
    gauges: BTreeMap<Key, f64>,
    /// Since start, for Prometheus.
    counter_totals: BTreeMap<Key, f64>,
    sample_totals: BTreeMap<Key, (u64, f64)>,
    http_totals: HttpMap<(u64, f64)>,
    /// Updates of a new series refused because a kind held [`MAX_SERIES`] already.
    dropped: u64,
}

impl Inner {
    /// Moves to a new interval when the current one is over.
    fn rotate(&mut self) {
        if self.current.began.elapsed() >= INTERVAL {
            let done = std::mem::replace(&mut self.current, Interval::new());
            self.history.push_back(done);
            while self.history.len() > RETAINED - 1 {
                self.history.pop_front();
            }
        }
    }
}

/// Adds `v` to `key` in `map` unless that would be a series too many.
fn add_to<V: Default>(
    map: &mut BTreeMap<Key, V>,
    key: &Key,
    dropped: &mut u64,
    f: impl FnOnce(&mut V),
) {
    if let Some(v) = map.get_mut(key) {
        f(v);
    } else if map.len() < MAX_SERIES {
        f(map.entry(key.clone()).or_default());
    } else {
        *dropped += 1;
    }
}

pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            inner: Mutex::new(Inner {
                current: Interval::new(),
                history: VecDeque::new(),
                gauges: BTreeMap::new(),
                counter_totals: BTreeMap::new(),
                sample_totals: BTreeMap::new(),
                http_totals: HttpMap::default(),
                dropped: 0,
            }),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.rotate();
        f(&mut inner)
    }

    /// Adds `by` to a counter.
    pub fn count(&self, name: &'static str, labels: Labels, by: f64) {
        let key = (name, labels);
        self.with(|m| {
            let Inner {
                current,
                counter_totals,
                dropped,
                ..
            } = m;
            add_to(&mut current.counters, &key, dropped, |a: &mut Aggregate| {
                a.add(by)
            });
            add_to(counter_totals, &key, dropped, |t: &mut f64| *t += by);
        });
    }

    /// Records a duration, in milliseconds as Consul's timers.
    pub fn time(&self, name: &'static str, labels: Labels, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        let key = (name, labels);
        self.with(|m| {
            let Inner {
                current,
                sample_totals,
                dropped,
                ..
            } = m;
            add_to(&mut current.samples, &key, dropped, |a: &mut Aggregate| {
                a.add(ms)
            });
            add_to(sample_totals, &key, dropped, |t: &mut (u64, f64)| {
                t.0 += 1;
                t.1 += ms;
            });
        });
    }

    /// Records one HTTP request's duration as `consul.api.http{method, path}`, `route` being its route pattern.
    pub fn time_http(&self, method: &'static str, route: &'static str, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        // One lookup per map on the hot path (a series seen before); a new series is inserted while there is room.
        self.with(|m| {
            let key = (method, route);
            let room = (
                m.current.http.len() < MAX_SERIES,
                m.http_totals.len() < MAX_SERIES,
            );
            match m.current.http.get_mut(&key) {
                Some(a) => a.add(ms),
                None if room.0 => {
                    m.current.http.entry(key).or_default().add(ms);
                }
                None => {}
            }
            match m.http_totals.get_mut(&key) {
                Some(t) => {
                    t.0 += 1;
                    t.1 += ms;
                }
                None if room.1 => {
                    m.http_totals.insert(key, (1, ms));
                }
                None => {}
            }
        });
    }

    /// Sets a gauge.
    pub fn gauge(&self, name: &'static str, labels: Labels, value: f64) {
        let key = (name, labels);
        self.with(|m| {
            let Inner {
                gauges, dropped, ..
            } = m;
            add_to(gauges, &key, dropped, |g: &mut f64| *g = value);
        });
    }

    /// `/v1/agent/metrics` in Consul's JSON: the interval under way.
    pub fn json(&self) -> Value {
        self.with(|m| {
            let seconds = m.current.began.elapsed().as_secs_f64().max(1.0);
            let stamp = weft_types::timefmt::go_utc(m.current.start);
            let gauges: Vec<Value> = m
                .gauges
                .iter()
                .map(|((name, labels), v)| json!({"Name": name, "Value": v, "Labels": label_map(labels)}))
                .collect();
            let counters: Vec<Value> = m
                .current
                .counters
                .iter()
                .map(|((name, labels), a)| a.json(name, labels, seconds))
                .collect();
            let mut samples: Vec<Value> = m
                .current
                .samples
                .iter()
                .map(|((name, labels), a)| a.json(name, labels, seconds))
                .collect();
            let mut http: Vec<(&HttpKey, &Aggregate)> = m.current.http.iter().collect();
            http.sort_by_key(|(k, _)| **k);
            samples.extend(
                http.into_iter()
                    .map(|(k, a)| a.json(HTTP_TIMING, &http_labels(k), seconds)),
            );
            json!({"Timestamp": stamp, "Gauges": gauges, "Points": [], "Counters": counters, "Samples": samples})
        })
    }

    /// The Prometheus text format (version 0.0.4): gauges, counters and samples since start.
    pub fn prometheus(&self) -> String {
        self.with(|m| {
            let mut out = String::new();
            let mut typed = std::collections::BTreeSet::new();
            let mut line = |out: &mut String,
                            kind: &str,
                            name: &str,
                            suffix: &str,
                            labels: &Labels,
                            v: f64| {
                let metric = prometheus_name(name);
                if typed.insert(metric.clone()) {
                    out.push_str(&format!("# TYPE {metric} {kind}\n"));
                }
                out.push_str(&format!(
                    "{metric}{suffix}{} {v}\n",
                    prometheus_labels(labels)
                ));
            };
            for ((name, labels), v) in &m.gauges {
                line(&mut out, "gauge", name, "", labels, *v);
            }
            for ((name, labels), v) in &m.counter_totals {
                line(&mut out, "counter", name, "", labels, *v);
            }
            for ((name, labels), (count, sum)) in &m.sample_totals {
                line(&mut out, "summary", name, "_sum", labels, *sum);
                line(&mut out, "summary", name, "_count", labels, *count as f64);
            }
            let mut http: Vec<(&HttpKey, &(u64, f64))> = m.http_totals.iter().collect();
            http.sort_by_key(|(k, _)| **k);
            for (k, (count, sum)) in http {
                let labels = http_labels(k);
                line(&mut out, "summary", HTTP_TIMING, "_sum", &labels, *sum);
                line(
                    &mut out,
                    "summary",
                    HTTP_TIMING,
                    "_count",
                    &labels,
                    *count as f64,
                );
            }
            out
        })
    }
}

/// The name HTTP timings go by (Consul's).
const HTTP_TIMING: &str = "consul.api.http";

fn http_labels((method, route): &HttpKey) -> Labels {
    vec![("method", method.to_string()), ("path", route_label(route))]
}

/// A route's pattern as Consul labels HTTP timings: `/v1/kv/` → `v1.kv._`, `/v1/agent/self` → `v1.agent.self`.
pub fn route_label(pattern: &str) -> String {
    let trimmed = pattern.trim_start_matches('/');
    match trimmed.strip_suffix('/') {
        Some(prefix) => format!("{}._", prefix.replace('/', ".")),
        None => trimmed.replace('/', "."),
    }
}

/// `consul.raft.apply` → `consul_raft_apply`: Prometheus allows `[a-zA-Z0-9_:]`.
fn prometheus_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn prometheus_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counters_samples_and_gauges_read_as_consuls() {
        let m = Metrics::default();
        m.count("consul.rpc.request", vec![], 1.0);
        m.count("consul.rpc.request", vec![], 1.0);
        m.time(
            "consul.api.http",
            vec![("method", "GET".into()), ("path", "v1.kv._".into())],
            Duration::from_millis(2),
        );
        m.time(
            "consul.api.http",
            vec![("method", "GET".into()), ("path", "v1.kv._".into())],
            Duration::from_millis(4),
        );
        m.gauge("consul.state.nodes", vec![], 3.0);
        let j = m.json();
        assert_eq!(j["Counters"][0]["Name"], "consul.rpc.request");
        assert_eq!(j["Counters"][0]["Count"], 2);
        let s = &j["Samples"][0];
        assert_eq!(
            (s["Count"].as_u64(), s["Min"].as_f64(), s["Max"].as_f64()),
            (Some(2), Some(2.0), Some(4.0))
        );
        assert_eq!(s["Mean"], 3.0);
        assert_eq!(s["Labels"]["path"], "v1.kv._");
        assert_eq!(j["Gauges"][0]["Value"], 3.0);
        assert!(j["Timestamp"].as_str().unwrap().ends_with(" +0000 UTC"));
        let p = m.prometheus();
        assert!(
            p.contains("# TYPE consul_rpc_request counter\nconsul_rpc_request 2\n"),
            "{p}"
        );
        assert!(
            p.contains("consul_api_http_count{method=\"GET\",path=\"v1.kv._\"} 2"),
            "{p}"
        );
        assert!(p.contains("consul_state_nodes 3"), "{p}");
    }

    #[test]
    fn series_are_bounded() {
        let m = Metrics::default();
        for i in 0..(MAX_SERIES + 10) {
            m.count("x", vec![("n", i.to_string())], 1.0);
        }
        assert!(m.json()["Counters"].as_array().unwrap().len() <= MAX_SERIES);
    }
}
