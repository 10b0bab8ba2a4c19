//! Polling for outcomes that happen asynchronously (a check turning critical, a session expiring). Tests state the
//! condition and a generous upper bound instead of sleeping a fixed time, so they are fast when the machine is idle
//! and still pass when it is loaded.

use anyhow::{anyhow, Result};
use std::fmt::Display;
use std::time::{Duration, Instant};

/// Pause between attempts.
const POLL: Duration = Duration::from_millis(30);

/// What one attempt yields. `true`, `()` and `Some(v)` mean done; `false` and `None` mean "not yet". A `Result` is
/// done when it is `Ok` *and* its content is done, so `Result<bool>` keeps polling on `Ok(false)` and
/// `Result<Option<T>>` yields the `T`; an `Err` is "not yet", with its message kept for the timeout error.
pub trait Attempt {
    type Value;
    fn into_outcome(self) -> Result<Self::Value, String>;
}

impl Attempt for bool {
    type Value = ();
    fn into_outcome(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("condition was false".into())
        }
    }
}

impl Attempt for () {
    type Value = ();
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<T> Attempt for Option<T> {
    type Value = T;
    fn into_outcome(self) -> Result<T, String> {
        self.ok_or_else(|| "got None".to_string())
    }
}

impl<T: Attempt, E: Display> Attempt for Result<T, E> {
    type Value = T::Value;
    fn into_outcome(self) -> Result<T::Value, String> {
        self.map_err(|e| format!("{e:#}"))?.into_outcome()
    }
}

/// Retries the async `attempt` every ~30 ms until it succeeds or `timeout` passes; the error then carries the last
/// attempt's reason. The attempt always runs at least once.
pub async fn eventually<F, O>(timeout: Duration, mut attempt: F) -> Result<O::Value>
where
    F: AsyncFnMut() -> O,
    O: Attempt,
{
    let deadline = Instant::now() + timeout;
    let mut tries = 0u32;
    loop {
        tries += 1;
        match attempt().await.into_outcome() {
            Ok(v) => return Ok(v),
            Err(why) => {
                if Instant::now() >= deadline {
                    return Err(anyhow!(
                        "not true within {timeout:?} ({tries} tries); last attempt: {why}"
                    ));
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for plain (blocking) closures, sleeping the thread between attempts.
pub fn eventually_sync<F, O>(timeout: Duration, mut attempt: F) -> Result<O::Value>
where
    F: FnMut() -> O,
    O: Attempt,
{
    let deadline = Instant::now() + timeout;
    let mut tries = 0u32;
    loop {
        tries += 1;
        match attempt().into_outcome() {
            Ok(v) => return Ok(v),
            Err(why) => {
                if Instant::now() >= deadline {
                    return Err(anyhow!(
                        "not true within {timeout:?} ({tries} tries); last attempt: {why}"
                    ));
                }
            }
        }
        std::thread::sleep(POLL);
    }
}
