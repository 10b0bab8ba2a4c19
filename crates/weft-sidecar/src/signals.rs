//! The signals that end a long-running command (agent, proxy, demo): Ctrl-C or SIGTERM.
//!
//! Handlers are installed by [`Signals::install`], before a command announces it is ready, so a SIGTERM sent the
//! moment the banner appears is a clean shutdown rather than the default kill.

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct Signals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl Signals {
    pub fn install() -> Signals {
        Signals {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Waits for either signal.
    pub async fn wait(&mut self) {
        async fn next(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.interrupt) => {}
            _ = next(&mut self.terminate) => {}
        }
    }
}
