//! A tiny raw HTTP client over reqwest: it sends exactly the method, URL and body given and hands back status,
//! headers and body untouched, so tests can assert on Consul's wire format byte for byte.

use anyhow::{anyhow, Context, Result};
use reqwest::header::HeaderMap;
use std::time::Duration;

/// No single request in the tests may take longer than this (the longest blocking query waits a few seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> Result<Http> {
        // Workspace builds unify reqwest's `rustls-no-provider` feature (the agent's HTTP checks use TLS), so a
        // process must pick a crypto provider before building any client; ring is the one Weft uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Http { client })
    }

    /// Sends `method url` with `body` (none: no body, no Content-Length beyond what reqwest adds).
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| anyhow!("bad method {method:?}: {e}"))?;
        let mut req = self.client.request(method.clone(), url);
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url} failed"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("reading the body of {method} {url}"))?
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// One answer: status code, headers, raw body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as (lossy) UTF-8 text, untrimmed.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "body of a {} answer is not JSON: {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// A header's value as text (first value; None when absent or not text).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `X-Consul-Index` as a number.
    pub fn index(&self) -> Result<u64> {
        let raw = self
            .header("x-consul-index")
            .ok_or_else(|| anyhow!("no X-Consul-Index header in {self:?}"))?;
        raw.parse()
            .map_err(|_| anyhow!("X-Consul-Index {raw:?} is not a number"))
    }

    /// Fails unless the status is `want`, showing the body.
    pub fn expect_status(&self, want: u16) -> Result<&Response> {
        if self.status == want {
            Ok(self)
        } else {
            Err(anyhow!(
                "expected status {want}, got {} with body {:?}",
                self.status,
                self.text()
            ))
        }
    }
}
