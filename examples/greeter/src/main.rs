//! The walkthrough's three services in one binary.
//!
//! - `greeter-demo greeting -listen ADDR -node NAME` answers a random greeting word: `Hi (NAME)`.
//! - `greeter-demo name -listen ADDR -node NAME` answers a random first name: `Jackson (NAME)`.
//! - `greeter-demo greeter -listen ADDR -greeting-upstream ADDR -name-upstream ADDR -node NAME` calls both through
//!   its sidecar's upstream ports and answers `From NAME: Hi (host-a) Jackson (host-c)`.
//!
//! A failing upstream gives a 502 naming the upstream and the reason, never a hang. Flags are Go-style (`-listen`)
//! or `--listen`; `-node` defaults to the hostname. Each service listens where it is told (loopback in the demo).

use axum::http::StatusCode;
use axum::response::IntoResponse;
use rand::seq::IndexedRandom;
use std::time::Duration;

const GREETINGS: &[&str] = &[
    "Hi",
    "Hello",
    "Hey",
    "Greetings",
    "Howdy",
    "Hiya",
    "Salutations",
    "Good day",
];
const NAMES: &[&str] = &[
    "Jackson",
    "Alexandrea",
    "Miguel",
    "Vesta",
    "Sherwood",
    "Amara",
    "Dmitri",
    "Ingrid",
    "Kofi",
    "Lucia",
    "Ravi",
    "Sakura",
    "Tobias",
    "Yara",
];

#[derive(Debug, Default)]
struct Args {
    role: String,
    listen: String,
    node: String,
    greeting_upstream: String,
    name_upstream: String,
}

fn usage() -> String {
    "usage: greeter-demo greeting|name -listen ADDR [-node NAME]\n       greeter-demo greeter -listen ADDR \
     -greeting-upstream ADDR -name-upstream ADDR [-node NAME]"
        .to_string()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn parse(argv: Vec<String>) -> Result<Args, String> {
    let mut it = argv.into_iter().skip(1);
    let role = it.next().ok_or_else(usage)?;
    if !matches!(role.as_str(), "greeting" | "name" | "greeter") {
        return Err(format!("unknown role {role:?}\n{}", usage()));
    }
    let mut args = Args {
        role,
        node: std::env::var("NODE_NAME").unwrap_or_else(|_| hostname()),
        ..Args::default()
    };
    while let Some(flag) = it.next() {
        let flag_name = flag.trim_start_matches('-').to_string();
        let (name, inline) = match flag_name.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag_name, None),
        };
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| format!("flag -{name} needs a value"))?,
        };
        match name.as_str() {
            "listen" => args.listen = value,
            "node" => args.node = value,
            "greeting-upstream" => args.greeting_upstream = value,
            "name-upstream" => args.name_upstream = value,
            other => return Err(format!("unknown flag -{other}\n{}", usage())),
        }
    }
    if args.listen.is_empty() {
        return Err(format!("-listen is required\n{}", usage()));
    }
    if args.role == "greeter"
        && (args.greeting_upstream.is_empty() || args.name_upstream.is_empty())
    {
        return Err(format!(
            "greeter needs -greeting-upstream and -name-upstream\n{}",
            usage()
        ));
    }
    Ok(args)
}

fn pick(words: &[&str]) -> String {
    words
        .choose(&mut rand::rng())
        .copied()
        .unwrap_or("Hi")
        .to_string()
}

/// Calls one upstream through the sidecar and returns its line, or why it failed.
async fn call(client: &reqwest::Client, what: &str, addr: &str) -> Result<String, String> {
    let url = if addr.starts_with("http://") {
        addr.to_string()
    } else {
        format!("http://{addr}/")
    };
    let resp = client.get(&url).send().await.map_err(|e| {
        let mut why = e.to_string();
        if e.is_connect() {
            why = "connection refused (is the sidecar running?)".into();
        } else if e.is_timeout() {
            why = "timed out".into();
        } else if why.contains("connection closed")
            || why.contains("reset")
            || why.contains("error sending request")
        {
            why = "connection closed by the mesh".into();
        }
        format!("{what}: {why}")
    })?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| format!("{what}: {e}"))?;
    if status.is_success() {
        Ok(body.trim().to_string())
    } else {
        // The mesh answers refusals itself as `<upstream>: <why>`; keep that, or name the upstream ourselves.
        let line = body
            .trim()
            .lines()
            .next()
            .unwrap_or(status.as_str())
            .to_string();
        if line.starts_with(&format!("{what}:")) {
            Err(line)
        } else {
            Err(format!("{what}: {line}"))
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // When built together with the rest of the workspace, reqwest carries rustls without a default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = match parse(std::env::args().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let node = args.node.clone();
    let app = match args.role.as_str() {
        "greeting" => axum::Router::new().route(
            "/",
            axum::routing::get(move || async move { format!("{} ({node})\n", pick(GREETINGS)) }),
        ),
        "name" => axum::Router::new().route(
            "/",
            axum::routing::get(move || async move { format!("{} ({node})\n", pick(NAMES)) }),
        ),
        _ => {
            // A new connection per call: the mesh authorizes connections, so intention changes show at once.
            // Upstreams are plain HTTP on loopback: no trust roots needed (a scratch container has none).
            let client = match reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(5))
                .tls_certs_only(Vec::new())
                .build()
            {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("cannot build an HTTP client: {e}");
                    std::process::exit(1);
                }
            };
            let (g, n) = (args.greeting_upstream.clone(), args.name_upstream.clone());
            axum::Router::new().route(
                "/",
                axum::routing::get(move || {
                    let (client, g, n, node) = (client.clone(), g.clone(), n.clone(), node.clone());
                    async move {
                        let (greeting, name) =
                            tokio::join!(call(&client, "greeting", &g), call(&client, "name", &n));
                        match (greeting, name) {
                            (Ok(greeting), Ok(name)) => {
                                (StatusCode::OK, format!("From {node}: {greeting} {name}\n"))
                                    .into_response()
                            }
                            (Err(e), _) | (_, Err(e)) => {
                                (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response()
                            }
                        }
                    }
                }),
            )
        }
    };
    println!(
        "greeter-demo {} listening on {} as {}",
        args.role,
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        args.node
    );
    // In a container the app is PID 1, which the kernel gives no default SIGTERM action: stop on it explicitly.
    // Open connections get 5 s to finish.
    let serve = axum::serve(listener, app).with_graceful_shutdown(stop_signal());
    tokio::select! {
        result = serve => {
            if let Err(e) = result {
                eprintln!("server failed: {e}");
                std::process::exit(1);
            }
        }
        _ = async {
            stop_signal().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        } => {}
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
