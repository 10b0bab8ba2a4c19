//! Docker checks (`DockerContainerID`, `Shell`, `Args`): the check's command runs inside a running container
//! through the Docker Engine API (`POST /containers/:id/exec`, `POST /exec/:id/start`, `GET /exec/:id/json`) on the
//! daemon's Unix socket (`DOCKER_HOST=unix://...`, `/var/run/docker.sock` by default), as `Shell -c "Args..."`.
//! Exit 0 is passing, 1 warning, anything else critical, as for script checks; at most the output limit of the
//! command's output is kept, the rest is read and dropped; the whole run is bounded by the check's timeout.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::time::Duration;
use weft_types::CheckStatus;

const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Largest answer read from the daemon besides the command's output (exec IDs, inspections).
const MAX_ANSWER: usize = 64 * 1024;

/// The daemon's socket: `DOCKER_HOST` when it is a `unix://` address, else the default.
fn socket() -> Result<String, String> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => host
            .strip_prefix("unix://")
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "DOCKER_HOST {host:?}: only unix:// sockets are supported for Docker checks"
                )
            }),
        _ => Ok(DEFAULT_SOCKET.to_string()),
    }
}

/// One request to the daemon; `keep` bytes of the answer's body at most (the rest read and dropped).
async fn call(
    method: &str,
    path: &str,
    body: Option<Value>,
    keep: usize,
) -> Result<(u16, Vec<u8>), String> {
    let socket = socket()?;
    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .map_err(|e| format!("cannot reach the Docker daemon at {socket}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("Docker daemon: {e}"))?;
    let driver = tokio::spawn(conn);
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "docker")
        .header("content-type", "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("Docker daemon: {e}"))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("Docker daemon: {e}"))?;
        if let Ok(data) = frame.into_data() {
            let room = keep.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    driver.abort();
    Ok((status, kept))
}

/// The payloads of Docker's multiplexed stream (an 8-byte header, then that many bytes, per frame).
fn demultiplex(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while rest.len() >= 8 {
        let size = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = (8 + size).min(rest.len());
        out.extend_from_slice(&rest[8..end]);
        rest = &rest[end..];
    }
    out
}

fn daemon_error(status: u16, body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    format!("Docker daemon answered {status}: {message}")
}

async fn run(
    container: &str,
    shell: &str,
    args: &[String],
    limit: usize,
) -> Result<(CheckStatus, String), String> {
    let container = weft_types::url::segment(container);
    let cmd = json!({"AttachStdout": true, "AttachStderr": true, "Tty": false, "Cmd": [shell, "-c", args.join(" ")]});
    let (status, body) = call(
        "POST",
        &format!("/containers/{container}/exec"),
        Some(cmd),
        MAX_ANSWER,
    )
    .await?;
    if status != 201 {
        return Err(daemon_error(status, &body));
    }
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["Id"].as_str().map(str::to_string))
        .ok_or("the Docker daemon gave no exec ID")?;
    let id = weft_types::url::segment(&id);
    // The output frames carry 8-byte headers: keep room for them within the limit.
    let (status, raw) = call(
        "POST",
        &format!("/exec/{id}/start"),
        Some(json!({"Detach": false, "Tty": false})),
        limit.saturating_mul(2).max(4096),
    )
    .await?;
    if status != 200 {
        return Err(daemon_error(status, &raw));
    }
    let mut output = String::from_utf8_lossy(&demultiplex(&raw)).into_owned();
    output.truncate(output.floor_char_boundary(limit));
    let (status, body) = call("GET", &format!("/exec/{id}/json"), None, MAX_ANSWER).await?;
    if status != 200 {
        return Err(daemon_error(status, &body));
    }
    let code = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["ExitCode"].as_i64());
    let verdict = match code {
        Some(0) => CheckStatus::Passing,
        Some(1) => CheckStatus::Warning,
        _ => CheckStatus::Critical,
    };
    Ok((verdict, output))
}

/// One run of a Docker check: its verdict and output.
pub async fn probe(
    container: &str,
    shell: &str,
    args: &[String],
    timeout: Duration,
    limit: usize,
) -> (CheckStatus, String) {
    match tokio::time::timeout(timeout, run(container, shell, args, limit)).await {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(why)) => (CheckStatus::Critical, why),
        Err(_) => (
            CheckStatus::Critical,
            format!(
                "Timed out ({}) running check in container {container}",
                weft_types::duration::format_duration(timeout)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_joined_without_their_headers() {
        let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 3];
        raw.extend_from_slice(b"ok\n");
        raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        raw.extend_from_slice(b"err\n");
        // A frame cut by the output limit keeps what arrived.
        raw.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 9, b'x']);
        assert_eq!(demultiplex(&raw), b"ok\nerr\nx");
    }
}
