//! Background draining of a child's stdout and stderr. A child writing to a pipe nobody reads blocks once the pipe
//! is full, so every pipe gets a reader thread for the child's whole life. The last lines are kept (both streams,
//! interleaved, tagged) so a failing test can show what the process said; stdout lines are also forwarded on a
//! channel so the starter can wait for the agent's banner.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How many lines are shown in error messages.
const SHOW: usize = 200;
/// How many lines are kept for [`OutputLog::contains`]: a busy agent logs hundreds of lines a second while a
/// peer is down, and a test looking for one line must not lose it to them.
const KEEP: usize = 20_000;

/// The recent output of a child process; cheap to clone.
#[derive(Clone, Default)]
pub struct OutputLog {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl OutputLog {
    pub fn new() -> OutputLog {
        OutputLog::default()
    }

    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == KEEP {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last lines, oldest first, one per line, each tagged with its stream.
    pub fn recent(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let skip = lines.len().saturating_sub(SHOW);
        lines
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether any kept line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().any(|l| l.contains(needle))
    }

    /// Reads `stream` line by line until EOF on a background thread, recording each line tagged `tag` and, when
    /// `forward` is given, sending it there too (send errors are ignored: the listener may have stopped caring).
    pub fn drain<R: Read + Send + 'static>(
        &self,
        stream: R,
        tag: &'static str,
        forward: Option<Sender<String>>,
    ) -> JoinHandle<()> {
        let log = self.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                        log.push(format!("[{tag}] {line}"));
                        if let Some(tx) = &forward {
                            let _ = tx.send(line);
                        }
                    }
                }
            }
        })
    }
}
