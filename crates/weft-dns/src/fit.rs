//! Making a response fit what the client allows. UDP: 512 bytes, or the client's EDNS0 payload size (at most
//! 65,467); without EDNS at most `udp_answer_limit` answers. TCP: 65,535 bytes. `a_record_limit` caps A/AAAA
//! answers everywhere. When answers must be dropped to fit, the TC bit is set, so the client asks again over TCP
//! and gets everything (Consul sets TC only with `enable_truncate`, and by default clients silently get part of the
//! answer). Answers dropped for `udp_answer_limit` set TC only with `enable_truncate`, as in Consul: that limit is
//! a choice of how many to hand out, not a lack of room.

use crate::DnsConfig;
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::ProtoError;

/// The wire form of `msg`, with names compressed unless `disable_compression` says otherwise.
fn to_bytes(msg: &Message, config: &DnsConfig) -> Result<Vec<u8>, ProtoError> {
    let mut buf = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut buf);
    if config.disable_compression {
        encoder.set_name_encoding(NameEncoding::Uncompressed);
    }
    msg.emit(&mut encoder)?;
    Ok(buf)
}

/// How a response travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP, with the client's EDNS0 payload size when it sent one.
    Udp {
        edns_payload: Option<u16>,
    },
    Tcp,
}

/// Most bytes of a response over `transport`.
pub fn max_size(transport: Transport) -> usize {
    match transport {
        Transport::Udp { edns_payload: None } => 512,
        Transport::Udp {
            edns_payload: Some(n),
        } => usize::from(n).clamp(512, 65_467),
        Transport::Tcp => 65_535,
    }
}

fn is_address(r: &hickory_proto::rr::Record) -> bool {
    matches!(r.record_type(), RecordType::A | RecordType::AAAA)
}

/// Applies the answer limits to `msg` and encodes it within the size `transport` allows.
pub fn encode(
    mut msg: Message,
    transport: Transport,
    config: &DnsConfig,
) -> Result<Vec<u8>, ProtoError> {
    if config.a_record_limit > 0 {
        let mut kept = 0;
        msg.answers.retain(|r| {
            if !is_address(r) {
                return true;
            }
            kept += 1;
            kept <= config.a_record_limit
        });
    }
    if transport == (Transport::Udp { edns_payload: None }) {
        let limit = config.udp_answer_limit.clamp(1, 8);
        if msg.answers.len() > limit {
            msg.answers.truncate(limit);
            keep_extras_in_step(&mut msg);
            if config.enable_truncate {
                msg.metadata.truncation = true;
            }
        }
    }
    let max = max_size(transport);
    let full = to_bytes(&msg, config)?;
    if full.len() <= max {
        return Ok(full);
    }
    // The most answers that fit, found by bisection (each try is one encode).
    let answers = std::mem::take(&mut msg.answers);
    let additionals = std::mem::take(&mut msg.additionals);
    msg.metadata.truncation = true;
    let (mut lo, mut hi) = (0usize, answers.len());
    let mut best = None;
    while lo <= hi {
        let mid = (lo + hi) / 2;
        let mut tried = msg.clone();
        tried.answers = answers[..mid].to_vec();
        tried.additionals = additionals.clone();
        keep_extras_in_step(&mut tried);
        let bytes = to_bytes(&tried, config)?;
        if bytes.len() <= max {
            best = Some(bytes);
            lo = mid + 1;
        } else if mid == 0 {
            break;
        } else {
            hi = mid - 1;
        }
    }
    match best {
        Some(bytes) => Ok(bytes),
        // Not even the question fits with the extras: the header, the question and TC.
        None => {
            msg.additionals.clear();
            msg.authorities.clear();
            to_bytes(&msg, config)
        }
    }
}

/// Drops additional records (SRV targets' addresses and TXT) whose owner no remaining SRV answer points at.
fn keep_extras_in_step(msg: &mut Message) {
    let targets: Vec<_> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.target.clone()),
            _ => None,
        })
        .collect();
    if targets.is_empty() {
        msg.additionals.clear();
        return;
    }
    msg.additionals.retain(|r| targets.contains(&r.name));
}
