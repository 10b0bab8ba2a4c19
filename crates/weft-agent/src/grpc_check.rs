//! gRPC health checks: `grpc.health.v1.Health/Check` over HTTP/2 (h2c, or TLS with `GRPCUseTLS`), as Consul runs
//! them. The two messages involved have one field each, so they are encoded here rather than pulling in a protobuf
//! code generator: the request `{string service = 1}`, the answer `{ServingStatus status = 1}`.

use std::time::Duration;
use weft_types::CheckStatus;

/// `host:port[/service]` into the address and the service name asked about ("" asks about the server as a whole).
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once('/').unwrap_or((target, ""))
}

/// The request body: one gRPC message frame (uncompressed) holding `HealthCheckRequest{service}`.
pub fn request_body(service: &str) -> Vec<u8> {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The serving status in a response body (one frame); `None` when it is not a health response.
pub fn serving_status(body: &[u8]) -> Option<u64> {
    let (header, rest) = body.split_at_checked(5)?;
    if header[0] != 0 {
        return None; // compressed: never asked for
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let message = rest.get(..len)?;
    // An absent field is proto3's default: UNKNOWN (0).
    let mut status = 0;
    let mut at = 0;
    while at < message.len() {
        let tag = varint(message, &mut at)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => status = varint(message, &mut at)?,
            (_, 0) => {
                varint(message, &mut at)?;
            }
            (_, 2) => {
                let n = varint(message, &mut at)? as usize;
                at = at.checked_add(n)?;
            }
            _ => return None,
        }
    }
    Some(status)
}

/// A status and the check's output.
pub fn verdict(
    target: &str,
    status: Option<u64>,
    grpc_status: Option<&str>,
) -> (CheckStatus, String) {
    match (status, grpc_status) {
        (Some(1), _) => (
            CheckStatus::Passing,
            format!("gRPC check {target}: success"),
        ),
        (Some(s), _) => {
            let name = match s {
                // Also what a server answers for a service it does not know, its NOT_FOUND status following in
                // trailers.
                0 => "UNKNOWN (or a service the server does not know)",
                2 => "NOT_SERVING",
                3 => "SERVICE_UNKNOWN",
                _ => "an unknown status",
            };
            (
                CheckStatus::Critical,
                format!("gRPC check {target}: serving status {name}"),
            )
        }
        (None, Some(code)) if code != "0" => (
            CheckStatus::Critical,
            format!("gRPC check {target}: failed with grpc-status {code}"),
        ),
        (None, _) => (
            CheckStatus::Critical,
            format!("gRPC check {target}: the answer is not a health response"),
        ),
    }
}

/// The check's time limit when it sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_are_framed_as_grpc_does() {
        assert_eq!(request_body(""), [0, 0, 0, 0, 0]);
        assert_eq!(request_body("db"), [0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(
            serving_status(&[0, 0, 0, 0, 0]),
            Some(0),
            "an empty message is UNKNOWN"
        );
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08]), None, "truncated");
        assert_eq!(serving_status(b"<html>"), None);
        assert_eq!(split_target("127.0.0.1:9090/db"), ("127.0.0.1:9090", "db"));
        assert_eq!(split_target("127.0.0.1:9090"), ("127.0.0.1:9090", ""));
        assert_eq!(verdict("t", Some(1), None).0, CheckStatus::Passing);
        assert!(verdict("t", Some(2), None).1.contains("NOT_SERVING"));
        assert!(verdict("t", None, Some("12")).1.contains("grpc-status 12"));
    }
}
