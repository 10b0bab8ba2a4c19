//! The browser side: one `chromedriver` per test driving headless Chromium, with the few helpers the scenarios need
//! (run a script, wait for a condition in the page, fill a field, save screenshots at two widths).
//!
//! Sessions run one at a time (a process-wide lock): two cores cannot host several Chromiums and still show a
//! change "within about a second". chromedriver leads its own process group, whose members are killed (by PID) on
//! drop, so a failing test leaves no browser behind.

use anyhow::{anyhow, bail, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard};

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// The widths screenshots are taken at: a laptop and a phone.
pub const WIDTHS: [(u32, &str); 2] = [(1366, "laptop"), (390, "phone")];

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push("/usr/bin".into());
    dirs.push("/usr/lib/chromium".into());
    for name in names {
        for dir in &dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Where screenshots go.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("WEFT_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/weft-screenshots"))
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    _turn: MutexGuard<'static, ()>,
}

impl Browser {
    /// A browser session, or `None` (with a message) when Chromium or chromedriver is not installed.
    pub async fn start() -> Result<Option<Browser>> {
        let Some(driver_bin) = find_program(&["chromedriver"]) else {
            eprintln!(
                "SKIPPED: chromedriver is not installed (apt-get install chromium chromium-driver; scripts/test does)"
            );
            return Ok(None);
        };
        let Some(chromium) = find_program(&["chromium", "chromium-browser", "google-chrome"])
        else {
            eprintln!(
                "SKIPPED: chromium is not installed (apt-get install chromium chromium-driver)"
            );
            return Ok(None);
        };
        let turn = ONE_AT_A_TIME.lock().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", driver_bin.display()))?;
        let mut guard = DriverGuard(Some(driver));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1366,900", "--hide-scrollbars", "--no-first-run",
                    "--disable-extensions", "--disable-background-networking", "--lang=en-US"
                ]
            }
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => bail!("capabilities must be an object"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let client = weft_testkit::eventually(
            Duration::from_secs(20),
            async || -> Result<Option<Client>, String> {
                let mut builder =
                    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
                builder.capabilities(caps.clone());
                builder
                    .connect(&url)
                    .await
                    .map(Some)
                    .map_err(|e| e.to_string())
            },
        )
        .await
        .context("cannot start a Chromium session through chromedriver")?;
        let driver = guard
            .0
            .take()
            .ok_or_else(|| anyhow!("driver guard emptied"))?;
        Ok(Some(Browser {
            client,
            driver,
            _turn: turn,
        }))
    }

    /// Ends the session (Chromium exits); chromedriver is killed on drop.
    pub async fn close(self) -> Result<()> {
        self.client.clone().close().await?;
        Ok(())
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("cannot open {url}"))
    }

    /// Runs a script (its `return` value comes back as JSON).
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.client
            .execute(script, args)
            .await
            .with_context(|| format!("script failed: {script}"))
    }

    /// Runs `script` until it returns something other than `null`/`false`/`undefined`, and returns that.
    pub async fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.js(script, vec![]).await?;
            if !(v.is_null() || v == Value::Bool(false)) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                let url = self.client.current_url().await.map(|u| u.to_string());
                bail!("{what}: not true within {timeout:?} (page {url:?})");
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no element {css}"))?
            .click()
            .await
            .with_context(|| format!("cannot click {css}"))?;
        Ok(())
    }

    /// Types into a field, as a person would.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no element {css}"))?;
        el.clear().await?;
        el.send_keys(text).await?;
        Ok(())
    }

    /// Sets a field's value by script (for text no keyboard types: control characters, half a megabyte).
    pub async fn set_value(&self, css: &str, value: &str) -> Result<()> {
        self.js(
            "const el = document.querySelector(arguments[0]); el.value = arguments[1]; \
             el.dispatchEvent(new Event('input', {bubbles: true})); return true;",
            vec![json!(css), json!(value)],
        )
        .await?;
        Ok(())
    }

    pub async fn text(&self, css: &str) -> Result<String> {
        let v = self
            .js(
                "const el = document.querySelector(arguments[0]); return el ? el.innerText : null;",
                vec![json!(css)],
            )
            .await?;
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no element {css}"))
    }

    /// The path of the page shown now.
    pub async fn path(&self) -> Result<String> {
        Ok(self.client.current_url().await?.path().to_string())
    }

    /// Saves the current page at each of [`WIDTHS`], as tall as the page (up to a limit).
    pub async fn screenshots(&self, name: &str) -> Result<Vec<PathBuf>> {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let mut saved = Vec::new();
        for (width, label) in WIDTHS {
            self.client.set_window_size(width, 900).await?;
            tokio::time::sleep(Duration::from_millis(150)).await;
            let height = self
                .js(
                    "return Math.ceil(document.documentElement.scrollHeight);",
                    vec![],
                )
                .await?
                .as_u64()
                .unwrap_or(900);
            // The window is a little taller than its viewport.
            let height = (height + 120).clamp(700, 3400) as u32;
            self.client.set_window_size(width, height).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let png = self.client.screenshot().await?;
            let path = dir.join(format!("{name}-{label}.png"));
            std::fs::write(&path, png)?;
            saved.push(path);
        }
        self.client.set_window_size(1366, 900).await?;
        Ok(saved)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_tree(&mut self.driver);
    }
}

/// Kills chromedriver and any Chromium it started if the session did not end cleanly.
struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            kill_tree(child);
        }
    }
}

/// Kills chromedriver and every process of its process group (it leads one: it was started with
/// `process_group(0)`), one positive PID at a time. Never a negative PID: `kill -KILL -<pgid>` is parsed by some
/// `kill` builds as `kill(-1)`, which would kill every process on the machine.
fn kill_tree(child: &mut Child) {
    let me = std::process::id();
    for pid in group_members(child.id()) {
        if pid > 1 && pid != me {
            let _ = weft_testkit::signal(pid, weft_testkit::Signal::Kill);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The PIDs whose process group is `pgid`, from `/proc/<pid>/stat` (the group is the 3rd field after the name).
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after_name = &stat[stat.rfind(')')? + 1..];
                    after_name.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

/// Whether a file is a PNG (screenshots are checked to be real images).
pub fn is_png(path: &Path) -> bool {
    std::fs::read(path)
        .map(|b| b.starts_with(b"\x89PNG"))
        .unwrap_or(false)
}
