//! Load against one entry address: `wrk` when it is installed (its output parsed), else a small built-in
//! generator with the same shape (N connections, each sending one request at a time); and the bulk client, which
//! streams a large body through and times it.

use anyhow::{anyhow, bail, Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::report::percentile;

/// What one load run produced.
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    pub requests: u64,
    pub elapsed: Duration,
    pub rps: f64,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    /// Socket errors plus answers that were not 2xx/3xx.
    pub errors: u64,
    pub error_note: String,
}

#[derive(Clone, Debug)]
pub enum Generator {
    Wrk(PathBuf),
    Builtin,
}

impl Generator {
    pub fn describe(&self, spec: &Spec) -> String {
        match self {
            Generator::Wrk(_) => format!(
                "wrk -t{} -c{} -d{}s --latency{}",
                spec.threads,
                spec.connections,
                spec.duration.as_secs(),
                if spec.close {
                    " -H 'Connection: close'"
                } else {
                    ""
                }
            ),
            Generator::Builtin => format!(
                "built-in generator, {} connections, {} s{}",
                spec.connections,
                spec.duration.as_secs(),
                if spec.close {
                    ", a fresh connection per request"
                } else {
                    ", kept alive"
                }
            ),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub addr: SocketAddr,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    /// Every request on a fresh connection (`Connection: close`).
    pub close: bool,
}

pub async fn run(generator: &Generator, spec: &Spec) -> Result<LoadResult> {
    match generator {
        Generator::Wrk(path) => wrk(path, spec).await,
        Generator::Builtin => builtin(spec).await,
    }
}

async fn wrk(path: &PathBuf, spec: &Spec) -> Result<LoadResult> {
    let mut cmd = tokio::process::Command::new(path);
    cmd.arg(format!("-t{}", spec.threads.min(spec.connections)))
        .arg(format!("-c{}", spec.connections))
        .arg(format!("-d{}s", spec.duration.as_secs().max(1)))
        .args(["--latency", "--timeout", "5s"]);
    if spec.close {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(format!("http://{}/", spec.addr))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().context("cannot start wrk")?;
    let limit = spec.duration + Duration::from_secs(20);
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("wrk did not finish within {limit:?} (killed)"))?
        .context("wrk failed")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk exited with {}: {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_wrk(&stdout).with_context(|| format!("unreadable wrk output:\n{stdout}"))
}

/// `406.00us`, `4.40ms`, `1.02s`, `1.50m` as a duration.
fn wrk_time(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let secs = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

pub fn parse_wrk(out: &str) -> Result<LoadResult> {
    let mut r = LoadResult::default();
    let mut notes = Vec::new();
    let mut have_rps = false;
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rps] => {
                r.rps = rps.parse().context("Requests/sec")?;
                have_rps = true;
            }
            ["50%", t] => r.p50 = wrk_time(t),
            ["99%", t] => r.p99 = wrk_time(t),
            [n, "requests", "in", t, ..] => {
                r.requests = n.parse().context("request count")?;
                r.elapsed = wrk_time(t.trim_end_matches(',')).unwrap_or_default();
            }
            _ if line.starts_with("Socket errors:") => {
                let sum: u64 = line
                    .trim_start_matches("Socket errors:")
                    .split(',')
                    .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum();
                if sum > 0 {
                    notes.push(line.to_string());
                }
                r.errors += sum;
            }
            _ if line.starts_with("Non-2xx or 3xx responses:") => {
                let n: u64 = line
                    .trim_start_matches("Non-2xx or 3xx responses:")
                    .trim()
                    .parse()
                    .unwrap_or(0);
                if n > 0 {
                    notes.push(line.to_string());
                }
                r.errors += n;
            }
            _ => {}
        }
    }
    if !have_rps {
        bail!("no Requests/sec line");
    }
    r.error_note = notes.join("; ");
    Ok(r)
}

/// The answer to one request: status and body length.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub body_len: u64,
}

/// One client connection speaking just enough HTTP/1.1 (Content-Length bodies) for the backend.
pub struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> Result<HttpConn> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        Ok(HttpConn {
            stream,
            buf: vec![0u8; 256 * 1024],
        })
    }

    /// Sends `GET path` and reads the whole answer; keeps at most `keep` bytes of the body.
    pub async fn get(&mut self, path: &str, close: bool, keep: usize) -> Result<Answer> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: weft-bench\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        );
        self.stream.write_all(req.as_bytes()).await?;
        let mut filled = 0;
        let head_end = loop {
            if let Some(pos) = find(&self.buf[..filled], b"\r\n\r\n") {
                break pos + 4;
            }
            if filled == self.buf.len() {
                bail!("answer head longer than {} bytes", self.buf.len());
            }
            let n = self.stream.read(&mut self.buf[filled..]).await?;
            if n == 0 {
                bail!("connection closed before an answer");
            }
            filled += n;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("no status in {head:?}"))?;
        let length: u64 = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| anyhow!("no Content-Length in {head:?}"))?;
        let mut body = Vec::new();
        let already = (filled - head_end) as u64;
        if already > length {
            bail!("more bytes than the answer's Content-Length");
        }
        body.extend_from_slice(&self.buf[head_end..filled][..(already as usize).min(keep)]);
        let mut left = length - already;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = self.stream.read(&mut self.buf[..want]).await?;
            if n == 0 {
                bail!("connection closed with {left} body bytes missing");
            }
            let room = keep.saturating_sub(body.len()).min(n);
            body.extend_from_slice(&self.buf[..room]);
            left -= n as u64;
        }
        Ok(Answer {
            status,
            body,
            body_len: length,
        })
    }
}

/// One request on a fresh connection (a sanity check through a topology).
pub async fn get_once(addr: SocketAddr, path: &str) -> Result<Answer> {
    let attempt = async {
        let mut conn = HttpConn::connect(addr).await?;
        conn.get(path, true, 4096).await
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| anyhow!("no answer within 10 s"))?
}

async fn builtin(spec: &Spec) -> Result<LoadResult> {
    let started = Instant::now();
    let deadline = started + spec.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..spec.connections {
        let (addr, close) = (spec.addr, spec.close);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut conn: Option<HttpConn> = None;
            while Instant::now() < deadline {
                let t = Instant::now();
                let c = match conn.take() {
                    Some(c) => c,
                    None => match HttpConn::connect(addr).await {
                        Ok(c) => c,
                        Err(_) => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let mut c = c;
                let r = tokio::time::timeout(Duration::from_secs(5), c.get("/", close, 0)).await;
                match r {
                    Ok(Ok(a)) if (200..400).contains(&a.status) => {
                        latencies.push(t.elapsed());
                        if !close {
                            conn = Some(c);
                        }
                    }
                    Ok(Ok(_)) => {
                        latencies.push(t.elapsed());
                        errors += 1;
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (l, e) = done.context("a load task panicked")?;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    Ok(LoadResult {
        requests: all.len() as u64,
        elapsed,
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: Some(percentile(&all, 50.0)),
        p99: Some(percentile(&all, 99.0)),
        errors,
        error_note: if errors > 0 {
            format!("{errors} failed requests")
        } else {
            String::new()
        },
    })
}

/// Streams `GET /bulk` (`bytes` long) through `addr` `runs` times, each on a fresh connection; MB/s of each run
/// (10^6 bytes, from the request sent to the last body byte read).
pub async fn bulk(addr: SocketAddr, bytes: u64, runs: usize) -> Result<Vec<f64>> {
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let attempt = async {
            let mut conn = HttpConn::connect(addr).await?;
            let t = Instant::now();
            let a = conn.get("/bulk", true, 0).await?;
            let elapsed = t.elapsed();
            if a.status != 200 || a.body_len != bytes {
                bail!(
                    "bulk answer {} with {} bytes (expected 200 with {bytes})",
                    a.status,
                    a.body_len
                );
            }
            Ok(bytes as f64 / 1e6 / elapsed.as_secs_f64())
        };
        let rate = tokio::time::timeout(Duration::from_secs(60), attempt)
            .await
            .map_err(|_| anyhow!("a bulk transfer took over 60 s"))??;
        rates.push(rate);
    }
    Ok(rates)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output() {
        let out = "Running 10s test @ http://127.0.0.1:8080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   635.91us    0.89ms  12.92ms   93.69%
    Req/Sec    28.35k     2.48k   35.71k    77.50%
  Latency Distribution
     50%  406.00us
     75%  517.00us
     90%  796.00us
     99%    4.40ms
  564122 requests in 10.01s, 70.48MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 10
Requests/sec:  56381.87
Transfer/sec:      7.04MB
";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.requests, 564122);
        assert!((r.rps - 56381.87).abs() < 0.01);
        assert_eq!(r.p50, Some(Duration::from_micros(406)));
        assert_eq!(r.p99, Some(Duration::from_micros(4400)));
        assert_eq!(r.errors, 14);
        assert_eq!(r.elapsed, Duration::from_millis(10010));
    }
}
