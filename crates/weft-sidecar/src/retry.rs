//! Waiting for something outside the sidecar (its agent, its platform's metadata) without guessing: each failure is
//! one line saying why and when the next try is, tries back off to a ceiling, and a stop signal ends the wait.

use anyhow::{bail, Result};
use std::future::Future;
use std::time::Duration;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs `attempt` until it succeeds; `stop` (SIGTERM) gives up with an error.
pub async fn retry<T, F, Fut>(
    what: &str,
    stop: impl Future<Output = ()>,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    tokio::pin!(stop);
    let mut backoff = FIRST_BACKOFF;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => eprintln!(
                "==> waiting for {what}: {e:#}; retrying in {}",
                weft_types::duration::format_duration(backoff)
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut stop => bail!("stopped while waiting for {what}"),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
