//! The sidecar proxy.
//!
//! A [`Proxy`] takes its identity's certificate from the local agent, accepts mutual-TLS connections from services
//! that intentions allow and hands them to the local application, and opens plaintext local ports for the
//! application's upstreams, each connection carried over mutual TLS to a healthy instance. It depends on no agent
//! or server code: everything it knows comes through [`control::AgentClient`], so it runs in-process or alone.

pub mod balance;
pub mod config;
pub mod control;
pub mod ingress;
pub mod ingress_entry;
pub mod listeners;
pub mod metrics;
pub mod metrics_endpoint;
pub mod tls;
pub mod tunnel;
mod upstream_error;

use config::ProxyConfig;
use control::{AgentClient, Endpoint, Intentions, Leaf, Roots};
use listeners::Tracker;
use metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tls::MeshTls;
use tokio::net::TcpListener;
use tokio::sync::watch;
use weft_types::url;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

/// A running proxy: its bound addresses, counters, and a handle to drain it.
pub struct Proxy {
    pub public_addr: Option<SocketAddr>,
    pub upstream_addrs: Vec<(String, SocketAddr)>,
    pub metrics: Arc<Metrics>,
    tracker: Arc<Tracker>,
    accept_loops: Vec<tokio::task::JoinHandle<()>>,
    tls: watch::Receiver<Option<Arc<MeshTls>>>,
}

/// The healthy endpoints of `service` (in `datacenter`, or the agent's own when empty), kept up to date.
fn watch_endpoints(
    agent: &AgentClient,
    service: &str,
    datacenter: &str,
    metrics: &Arc<Metrics>,
) -> watch::Receiver<Option<Arc<Vec<Endpoint>>>> {
    let (tx, rx) = watch::channel(None);
    let mut path = format!("/v1/health/connect/{}?passing=1", url::segment(service));
    if !datacenter.is_empty() {
        path.push_str(&format!("&dc={}", url::query_value(datacenter)));
    }
    control::spawn_watch(
        agent.clone(),
        path,
        tx,
        metrics.clone(),
        control::parse_endpoints,
    );
    rx
}

impl Proxy {
    /// Binds every listener (so the ports are ready when this returns), starts the watches and serves.
    pub async fn start(config: ProxyConfig, agent: AgentClient) -> Result<Proxy, ProxyError> {
        Proxy::start_counting(config, agent, Arc::new(Metrics::default())).await
    }

    /// Like [`Proxy::start`], counting into `metrics` (a reloaded gateway keeps its counters).
    pub async fn start_counting(
        config: ProxyConfig,
        agent: AgentClient,
        metrics: Arc<Metrics>,
    ) -> Result<Proxy, ProxyError> {
        let tracker = Arc::new(Tracker::default());
        let mut accept_loops = Vec::new();

        let (roots_tx, roots_rx) = watch::channel::<Option<Arc<Roots>>>(None);
        control::spawn_watch(
            agent.clone(),
            "/v1/agent/connect/ca/roots".into(),
            roots_tx,
            metrics.clone(),
            control::parse_roots,
        );
        let (leaf_tx, leaf_rx) = watch::channel::<Option<Arc<Leaf>>>(None);
        control::spawn_watch(
            agent.clone(),
            format!(
                "/v1/agent/connect/ca/leaf/{}",
                url::segment(&config.service)
            ),
            leaf_tx,
            metrics.clone(),
            control::parse_leaf,
        );
        let intentions_rx = if config.public.is_some() {
            let (tx, rx) = watch::channel::<Option<Arc<Intentions>>>(None);
            let name = config.service.clone();
            control::spawn_watch(
                agent.clone(),
                format!(
                    "/v1/connect/intentions/match?by=destination&name={}",
                    url::query_value(&config.service)
                ),
                tx,
                metrics.clone(),
                move |a| control::parse_intentions(a, &name),
            );
            Some(rx)
        } else {
            None
        };
        let (tls_tx, tls_rx) = watch::channel::<Option<Arc<MeshTls>>>(None);
        tokio::spawn(build_tls(
            config.service.clone(),
            roots_rx,
            leaf_rx,
            intentions_rx,
            metrics.clone(),
            tls_tx,
        ));

        let mut public_addr = None;
        if let Some(public) = &config.public {
            let listener =
                TcpListener::bind(public.bind)
                    .await
                    .map_err(|error| ProxyError::Bind {
                        addr: public.bind,
                        error,
                    })?;
            public_addr = listener.local_addr().ok();
            accept_loops.push(tokio::spawn(listeners::serve_public(
                listener,
                public.local_service.clone(),
                tls_rx.clone(),
                metrics.clone(),
                tracker.clone(),
            )));
        }
        let mut upstream_addrs = Vec::new();
        for upstream in &config.upstreams {
            let listener =
                TcpListener::bind(upstream.bind)
                    .await
                    .map_err(|error| ProxyError::Bind {
                        addr: upstream.bind,
                        error,
                    })?;
            if let Ok(addr) = listener.local_addr() {
                upstream_addrs.push((upstream.destination.clone(), addr));
            }
            let rx = watch_endpoints(
                &agent,
                &upstream.destination,
                &upstream.datacenter,
                &metrics,
            );
            accept_loops.push(tokio::spawn(listeners::serve_upstream(
                listener,
                upstream.clone(),
                tls_rx.clone(),
                rx,
                metrics.clone(),
                tracker.clone(),
            )));
        }
        for http in &config.ingress_http {
            let listener =
                TcpListener::bind(http.bind)
                    .await
                    .map_err(|error| ProxyError::Bind {
                        addr: http.bind,
                        error,
                    })?;
            if let Ok(addr) = listener.local_addr() {
                upstream_addrs.push((format!("http:{}", http.services.join(",")), addr));
            }
            let mut routes = Vec::new();
            for service in &http.services {
                let rx = watch_endpoints(&agent, service, "", &metrics);
                routes.push(ingress::Route {
                    upstream: config::Upstream {
                        destination: service.clone(),
                        datacenter: http.datacenter.clone(),
                        bind: http.bind,
                    },
                    hosts: http.hosts.get(service).cloned().unwrap_or_default(),
                    endpoints: rx,
                    balancer: Arc::default(),
                });
            }
            accept_loops.push(tokio::spawn(ingress::serve_http(
                listener,
                Arc::new(routes),
                tls_rx.clone(),
                metrics.clone(),
                tracker.clone(),
            )));
        }
        Ok(Proxy {
            public_addr,
            upstream_addrs,
            metrics,
            tracker,
            accept_loops,
            tls: tls_rx,
        })
    }

    /// Waits until the certificate and roots are loaded (true), or `timeout` passes (false).
    pub async fn ready(&self, timeout: Duration) -> bool {
        let mut rx = self.tls.clone();
        let wait = async {
            loop {
                if rx.borrow_and_update().is_some() {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// The serial of the certificate new handshakes use.
    pub fn current_serial(&self) -> Option<String> {
        self.tls.borrow().as_ref().map(|t| t.leaf.serial.clone())
    }

    pub fn active_connections(&self) -> usize {
        self.tracker.active()
    }

    /// Stops accepting and closes the listeners (their ports are free when this returns); open connections go on
    /// until [`Proxy::drain`].
    pub async fn close_listeners(&mut self) {
        for l in self.accept_loops.drain(..) {
            l.abort();
            let _ = l.await;
        }
    }

    /// Stops accepting, lets open connections finish for up to `grace`, and returns how many were cut off.
    pub async fn drain(self, grace: Duration) -> usize {
        for l in &self.accept_loops {
            l.abort();
        }
        let left = self.tracker.drained(grace).await;
        tracing::info!(left, metrics = %self.metrics.summary(), "proxy stopped");
        left
    }
}

/// Rebuilds the TLS state whenever roots, the leaf or the intentions change (a new snapshot has a new ticket key,
/// so clients make a full handshake, and a refused one hears why).
async fn build_tls(
    service: String,
    mut roots: watch::Receiver<Option<Arc<Roots>>>,
    mut leaf: watch::Receiver<Option<Arc<Leaf>>>,
    intentions: Option<watch::Receiver<Option<Arc<Intentions>>>>,
    metrics: Arc<Metrics>,
    tx: watch::Sender<Option<Arc<MeshTls>>>,
) {
    let mut intention_changes = intentions.clone();
    loop {
        let (r, l) = (
            roots.borrow_and_update().clone(),
            leaf.borrow_and_update().clone(),
        );
        if let Some(i) = intention_changes.as_mut() {
            i.borrow_and_update();
        }
        if let (Some(r), Some(l)) = (r, l) {
            match MeshTls::build(r, l.clone(), &service, intentions.clone(), metrics.clone()) {
                Ok(state) => {
                    tracing::info!(service = %service, serial = %l.serial, "TLS identity loaded");
                    tx.send_replace(Some(Arc::new(state)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot use the new certificate; keeping the previous one")
                }
            }
        }
        tokio::select! {
            r = roots.changed() => if r.is_err() { return },
            l = leaf.changed() => if l.is_err() { return },
            i = changed(&mut intention_changes) => if i.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}

/// The next change of an optional watch; never, without one.
async fn changed<T>(rx: &mut Option<watch::Receiver<T>>) -> Result<(), watch::error::RecvError> {
    match rx {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tunnel_tests;
