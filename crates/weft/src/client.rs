//! The CLI's HTTP client: finds the agent (`-http-addr`, `WEFT_HTTP_ADDR`, `CONSUL_HTTP_ADDR`, else
//! 127.0.0.1:8500) and turns non-2xx answers into one-line errors.

use anyhow::{anyhow, bail, Result};
use reqwest::{Method, StatusCode};

/// Consul's HTTP API flags (`-http-addr`, `-token`, `-datacenter`, `-stale`), shared with the sidecar commands.
pub use weft_sidecar::args::AgentFlags as HttpArgs;
/// Percent-encoding for path segments, KV paths and query values.
pub use weft_types::url::{path as encode_path, query_value, segment};

pub struct Api {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    datacenter: Option<String>,
    stale: bool,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| anyhow!("unexpected answer from the agent: {e}"))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
}

impl Api {
    pub fn new(args: &HttpArgs) -> Result<Api> {
        let addr = args.addr();
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else if let Some(path) = addr.strip_prefix("unix://") {
            bail!("unix socket addresses are not supported: {path}");
        } else {
            format!("http://{addr}")
        };
        let mut builder = reqwest::Client::builder();
        if base.starts_with("http://") {
            // Plain HTTP needs no trust roots: a host without a CA bundle (a scratch container) must not fail.
            builder = builder.tls_certs_only(Vec::new());
        }
        let http = builder
            .build()
            .map_err(|e| anyhow!("cannot build HTTP client: {e}"))?;
        let token = args.token()?;
        Ok(Api {
            base,
            http,
            token,
            datacenter: args.datacenter.clone(),
            stale: args.stale,
        })
    }

    /// Sends a request; the path includes `/v1/...` and any query string.
    pub async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Answer> {
        let mut url = format!("{}{}", self.base, path);
        let mut extra = Vec::new();
        if let Some(dc) = &self.datacenter {
            extra.push(format!("dc={dc}"));
        }
        if self.stale && method == Method::GET {
            extra.push("stale".to_string());
        }
        if !extra.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&extra.join("&"));
        }
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow!("Error connecting to Weft agent at {}: {e}", self.base))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| anyhow!("Error reading answer: {e}"))?
            .to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Like [`Api::call`], but a non-2xx answer is an error carrying the agent's reason.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Answer> {
        let answer = self.call(method, path, body).await?;
        if !answer.status.is_success() {
            bail!(
                "Unexpected response code: {} ({})",
                answer.status.as_u16(),
                answer.text()
            );
        }
        Ok(answer)
    }

    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        self.ok(Method::GET, path, None).await?.json()
    }
}

/// Space-padded columns, like Consul's columnize output.
pub fn columns(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..width)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
