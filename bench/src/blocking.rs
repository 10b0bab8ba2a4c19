//! Scenario 4, blocking-query wake-up: 1,000 concurrent blocking queries on one service, then one write that
//! changes it. Target: every query answers within 50 ms of the change.
//!
//! Set-up: service `web` gets one instance (`PUT /v1/catalog/register`), and `GET /v1/health/service/web` gives
//! the current `X-Consul-Index` N. Then 1,000 connections each send
//! `GET /v1/health/service/web?index=N&wait=60s`. They are written by a minimal HTTP/1.1 client on raw TCP
//! sockets, so the benchmark knows when each request has been handed to the kernel (an ordinary client does not
//! say) and stamps each answer the moment its last byte arrives. Once all requests are out, the benchmark waits a
//! moment for the agent to park them and checks that none has answered yet.
//!
//! The change: one write registers a second `web` instance. For each query, the figure is the time from the
//! write's own response arriving to the query's answer arriving (zero if the answer came first, which happens when
//! the agent wakes watchers before it answers the writer). Each answer must be a 200 with an index past N listing
//! both instances. The benchmark's own process handles the 1,000 answers on the same 2 cores as the agent, so its
//! overhead is part of the figure. It needs an open-file limit of about 2 per query plus some (`ulimit -n`): both
//! this process and the agent (which inherits it) hold one socket per query.
//!
//! The agent's per-client connection limit is raised above the watchers (they all come from one address).
//!
//! Connections are kept alive by default, as Consul's clients keep theirs; `--close` sends `Connection: close`,
//! which adds the agent's connection teardown to each answer.

use crate::process::{self, Agent};
use crate::report::{announce, ms, Row, Summary, Verdict};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

pub const TARGET: Duration = Duration::from_millis(50);
/// How long to let the agent park the queries once they are all sent.
const PARK: Duration = Duration::from_secs(1);

/// `close`: the queries ask for `Connection: close`, so the agent also tears each connection down as it answers.
pub async fn run(bin: &Path, watchers: usize, close: bool) -> Result<Vec<Row>> {
    let need = (watchers as u64) * 2 + 100;
    let limit = process::open_file_limit()?;
    if limit < need {
        let row = Row::new(
            format!("{watchers} blocking queries: wake-up"),
            format!(
                "open-file limit (ulimit -n) is {limit}, need ~{need}: run `ulimit -n 4096` first"
            ),
            format!("all within {}", ms(TARGET)),
            Verdict::Skipped,
        );
        announce(&row);
        return Ok(vec![row]);
    }
    // The 1,000 watchers stand for many clients but all come from 127.0.0.1: lift the per-client connection limit
    // (Consul's and Weft's default of 200) above them, as a deployment would not see them from one address.
    let limit = format!("limits {{ http_max_conns_per_client = {} }}", watchers * 2);
    let agent = Agent::start_dev(bin, "0", &["-hcl", &limit]).await?;
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    register(&client, &agent.url, 1).await?;
    let resp = client
        .get(format!("{}/v1/health/service/web", agent.url))
        .send()
        .await?;
    let index: u64 = resp
        .headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("/v1/health/service/web gave no X-Consul-Index"))?;

    let sent = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let all_sent = Arc::new(Notify::new());
    let request = format!(
        "GET /v1/health/service/web?index={index}&wait=60s HTTP/1.1\r\nHost: {}\r\n{}\r\n",
        agent.addr,
        if close { "Connection: close\r\n" } else { "" }
    );
    let mut queries = tokio::task::JoinSet::new();
    for _ in 0..watchers {
        let (addr, request) = (agent.addr.clone(), request.clone());
        let (sent, answered, all_sent) = (sent.clone(), answered.clone(), all_sent.clone());
        queries.spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.context("connect")?;
            stream.set_nodelay(true)?;
            stream.write_all(request.as_bytes()).await?;
            if sent.fetch_add(1, Ordering::SeqCst) + 1 == watchers {
                all_sent.notify_one();
            }
            let answer = read_response(&mut stream).await;
            answered.fetch_add(1, Ordering::SeqCst);
            // The connection stays open (kept alive, as clients do) until every query has answered.
            answer.map(|a| (a, stream))
        });
    }
    let started = Instant::now();
    let send_deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::select! {
        _ = all_sent.notified() => {}
        // A query that ends now failed to connect or send, or answered before any change.
        Some(done) = queries.join_next() => {
            match done.context("a query task panicked")? {
                Err(e) => return Err(e.context("sending a blocking query")),
                Ok(_) => bail!("a blocking query answered before any change (index {index})"),
            }
        }
        _ = send_deadline => bail!(
            "only {} of {watchers} blocking queries could be sent within 30 s",
            sent.load(Ordering::SeqCst)
        ),
    }
    let sending = started.elapsed();
    println!(
        "    {watchers} blocking queries sent in {} (index {index}); parking for {PARK:?}",
        ms(sending)
    );
    if sending > Duration::from_millis(900) {
        println!(
            "    (probably some connects waited ~1 s for a SYN retransmit: the agent's listen backlog overflowed)"
        );
    }
    tokio::time::sleep(PARK).await;
    let early = answered.load(Ordering::SeqCst);
    if early > 0 {
        bail!("{early} blocking queries answered before any change (index {index})");
    }
    let rss = agent.rss()?;
    println!(
        "    agent with {watchers} parked queries: {}",
        rss.describe()
    );

    let pid = agent.guard.pid();
    let (agent_cpu0, own_cpu0) = (
        process::cpu_time(pid)?,
        process::cpu_time(std::process::id())?,
    );
    let write_sent = Instant::now();
    register(&client, &agent.url, 2).await?;
    let write_done = Instant::now();

    // Collect every answer first, and only then look inside them, so checking does not delay the stamps.
    let mut answers = Vec::with_capacity(watchers);
    let collect = async {
        while let Some(done) = queries.join_next().await {
            answers.push(done.context("a query task panicked")??);
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(90), collect)
        .await
        .map_err(|_| anyhow!("blocking queries did not all answer within 90 s"))??;
    let all_done = Instant::now();
    let (agent_cpu, own_cpu) = (
        process::cpu_time(pid)?.saturating_sub(agent_cpu0),
        process::cpu_time(std::process::id())?.saturating_sub(own_cpu0),
    );
    drop(agent);

    let mut after_response = Vec::with_capacity(watchers);
    let mut after_send = Vec::with_capacity(watchers);
    let mut before_response = 0;
    for (answer, _stream) in &answers {
        if answer.status != 200 {
            bail!("a blocking query answered {}", answer.status);
        }
        if answer.index <= index {
            bail!(
                "a blocking query returned index {} (not past {index}) without the change",
                answer.index
            );
        }
        let n = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0);
        if n != 2 {
            bail!("a blocking query listed {n} instances, expected 2");
        }
        if answer.at < write_done {
            before_response += 1;
        }
        after_response.push(answer.at.saturating_duration_since(write_done));
        after_send.push(answer.at.saturating_duration_since(write_sent));
    }
    drop(answers);

    let woken = after_response.len();
    let within = after_response.iter().filter(|d| **d <= TARGET).count();
    let from_response = Summary::of(&mut after_response);
    let from_send = Summary::of(&mut after_send);
    println!(
        "    write took {}; {before_response} answers arrived before the write's own response",
        ms(write_done - write_sent)
    );
    println!(
        "    CPU used from the write to the last answer ({}): agent {}, this benchmark {}",
        ms(all_done - write_sent),
        ms(agent_cpu),
        ms(own_cpu)
    );
    println!("    from write response: {}", from_response.describe());
    println!("    from write sent:     {}", from_send.describe());
    let rows = vec![
        Row::new(
            format!(
                "{watchers} blocking queries{} answered within 50 ms",
                if close { " (close)" } else { "" }
            ),
            format!("{within}/{woken}"),
            format!("all {watchers}"),
            Verdict::check(within == watchers),
        ),
        Row::new(
            "  blocking wake-up after write, max",
            ms(from_response.max),
            format!("<= {}", ms(TARGET)),
            Verdict::check(from_response.max <= TARGET),
        ),
        Row::new(
            "  blocking wake-up after write, p99",
            format!("{} (p50 {})", ms(from_response.p99), ms(from_response.p50)),
            format!("<= {}", ms(TARGET)),
            Verdict::check(from_response.p99 <= TARGET),
        ),
        Row::info(
            "  same, from the write being sent, max",
            format!(
                "{} (write took {})",
                ms(from_send.max),
                ms(write_done - write_sent)
            ),
        ),
    ];
    rows.iter().for_each(announce);
    Ok(rows)
}

/// Registers instance `n` of `web` on node `bench-node-n`.
async fn register(client: &reqwest::Client, url: &str, n: u32) -> Result<()> {
    let body = json!({
        "Node": format!("bench-node-{n}"),
        "Address": format!("10.0.1.{n}"),
        "Service": {"ID": format!("web-{n}"), "Service": "web", "Port": 8080},
    });
    let resp = client
        .put(format!("{url}/v1/catalog/register"))
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() || text.trim() != "true" {
        bail!("registering web-{n}: {status} {text}");
    }
    Ok(())
}

struct Answer {
    /// When the answer's last byte arrived.
    at: Instant,
    status: u16,
    index: u64,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 response (Content-Length or chunked body, or up to EOF) and stamps its completion.
async fn read_response(stream: &mut TcpStream) -> Result<Answer> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let n = stream.read_buf(&mut buf).await?;
        let eof = n == 0;
        if let Some(answer) = parse(&buf, eof)? {
            return Ok(answer);
        }
        if eof {
            bail!("connection closed mid-response ({} bytes)", buf.len());
        }
    }
}

/// A complete response in `buf`, or `None` if more bytes are needed.
fn parse(buf: &[u8], eof: bool) -> Result<Option<Answer>> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let at = Instant::now();
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
    let (mut length, mut chunked, mut index) = (None, false, 0);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "x-consul-index" => index = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    let rest = &buf[head_end + 4..];
    let body = if chunked {
        match dechunk(rest)? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else if let Some(length) = length {
        if rest.len() < length {
            return Ok(None);
        }
        rest[..length].to_vec()
    } else if eof {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Answer {
        at,
        status,
        index,
        body,
    }))
}

/// The body of a complete chunked encoding, or `None` if it is not complete yet.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[..line_end])?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(rest.ends_with(b"\r\n").then_some(body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
