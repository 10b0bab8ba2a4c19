//! `weft agent`: parses the configuration, builds the [`App`] and runs it until SIGINT/SIGTERM or
//! `/v1/agent/leave`; SIGHUP reloads the configuration.

use crate::app::{App, Listeners};
use crate::config::{AgentFlags, ConfigBuilder, RuntimeConfig};
use crate::reload::LogControl;
use anyhow::Result;
use std::io::Write;
use std::net::SocketAddr;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter};

pub async fn run(flags: AgentFlags) -> Result<()> {
    // Every problem in one line, before anything is bound.
    let config = ConfigBuilder::from_flags(&flags).build_and_validate()?;
    let logs = init_logging(config.log_filter);
    for key in &config.ignored {
        tracing::warn!(setting = %key, "accepted for Consul compatibility but not acted on by Weft");
    }
    let listeners = Listeners::bind(&config)?;
    let app = App::build(config, listeners, logs).await?;
    let mut signals = weft_sidecar::signals::Signals::install();
    let mut hangups = signal(SignalKind::hangup()).ok();
    print_banner(app.config(), app.http_addr()?, app.dns_addr());
    let reloader = app.reloader();
    let reloads = tokio::spawn(async move {
        while let Some(h) = hangups.as_mut() {
            if h.recv().await.is_none() {
                break;
            }
            match reloader.reload().await {
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "reload failed; the running configuration is unchanged")
                }
            }
        }
    });
    let result = app.run(signals.wait()).await;
    reloads.abort();
    result?;
    println!("==> Weft agent stopped");
    Ok(())
}

/// Logs to stderr at the configured level (changed later by reload), and to monitors at theirs.
fn init_logging(filter: &'static str) -> LogControl {
    let directives = |level: &str| format!("{level},hyper=warn,reqwest=warn,openraft=warn");
    let (level, handle) = reload::Layer::new(EnvFilter::new(directives(filter)));
    let stream = std::sync::Arc::new(weft_http::monitor::LogStream::default());
    let installed = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(level),
        )
        .with(crate::log_tap::LogTap::layer(stream.clone()))
        .try_init()
        .is_ok();
    if !installed {
        return LogControl::default();
    }
    LogControl::with_stream(stream, move |level| {
        handle
            .reload(EnvFilter::new(directives(level)))
            .map_err(|e| crate::reload::ReloadError::LogLevel(e.to_string()))
    })
}

fn print_banner(config: &RuntimeConfig, http: SocketAddr, dns: Option<SocketAddr>) {
    println!("==> Weft agent running!");
    println!("             Version: '{}'", weft_types::VERSION);
    println!("           Node name: '{}'", config.node_name);
    println!("          Datacenter: '{}'", config.datacenter);
    let role = if config.dev {
        "true (Bootstrap: true, dev mode)".to_string()
    } else if config.server {
        format!(
            "true (Bootstrap expect: {}, RPC: {})",
            config.bootstrap_expect,
            SocketAddr::new(config.bind_addr, config.server_port)
        )
    } else {
        format!("false (servers: {})", config.retry_join.join(", "))
    };
    println!("              Server: {role}");
    println!(
        "         Client Addr: [{}] (HTTP: {}, DNS: {})",
        config.client_addr,
        http.port(),
        dns.map_or(-1, |d| i32::from(d.port()))
    );
    println!("        Cluster Addr: {}", config.advertise_addr);
    if let Some(dns) = dns {
        println!("                 DNS: udp+tcp://{dns}");
    }
    println!("            HTTP API: http://{http}");
    let _ = std::io::stdout().flush();
}
