//! The listeners: UDP and TCP, answering from the agent's local state. Everything that comes in is bounded: a
//! packet that does not decode gets FORMERR (or is dropped when not even its header is there, or when it is itself
//! a response), other opcodes NOTIMP, other classes REFUSED; forwarded queries in flight, TCP connections and their
//! idle time are capped, so a flood costs bounded memory and everyone else is still answered.

use crate::answer::{answer, Answer, Question};
use crate::fit::{encode, Transport};
use crate::name::{parse, Lookup, Parsed};
use crate::remote::Fetched;
use crate::{recursor, DnsConfig};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLockReadGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use weft_state::Store;

/// What the DNS server reads: the agent's local copy of the cluster's state.
pub trait DnsState: Send + Sync + 'static {
    fn store(&self) -> RwLockReadGuard<'_, Store>;
    /// How old the copy may be: zero where it is authoritative (the leader, dev mode); `None` before this agent
    /// has heard from any server.
    fn staleness(&self) -> Option<Duration>;
    /// Whether DNS may name this service (with ACLs: the agent's `dns` or `default` token holds `service:read`).
    fn may_see_service(&self, _name: &str) -> bool {
        true
    }
    /// Whether DNS may name this node (`node:read`).
    fn may_see_node(&self, _name: &str) -> bool {
        true
    }
    /// The answer to a read of the HTTP API at `path`, made with DNS's token: by another datacenter
    /// (`Some(dc)`), or by this datacenter's leader (`None`: a prepared query failing over). Where nothing can be
    /// asked (dev mode, no federation), nothing is there: NXDOMAIN, as for a datacenter no server knows.
    fn fetch<'a>(
        &'a self,
        _datacenter: Option<&'a str>,
        _path: &'a str,
    ) -> Pin<Box<dyn Future<Output = Fetched> + Send + 'a>> {
        Box::pin(async { Fetched::NotFound })
    }
}

/// A question answered elsewhere (see [`crate::remote`]).
struct Remote {
    req: Message,
    lookup: Lookup,
    zone: String,
    /// `None`: this datacenter's leader, running a prepared query with its failover.
    datacenter: Option<String>,
    transport: Transport,
}

/// Forwarded queries in flight at once; more are dropped (the client retries).
const MAX_FORWARDS: usize = 256;
/// TCP connections at once; more are closed at once.
const MAX_TCP: usize = 256;
/// How long a TCP connection may sit between queries, or take to send one.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// The EDNS0 payload size this server offers.
const OUR_PAYLOAD: u16 = 4096;

pub struct DnsServer {
    config: DnsConfig,
    state: Arc<dyn DnsState>,
    forwards: Arc<Semaphore>,
    tcp_slots: Arc<Semaphore>,
}

/// What to do with one packet.
enum Step {
    Reply(Vec<u8>),
    /// Not ours: ask the recursors, then answer.
    Forward(Box<Message>),
    /// Ours, but answered by the servers: another datacenter, or a query failing over.
    Remote(Box<Remote>),
    Drop,
}

impl DnsServer {
    pub fn new(config: DnsConfig, state: Arc<dyn DnsState>) -> Arc<DnsServer> {
        Arc::new(DnsServer {
            config,
            state,
            forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
            tcp_slots: Arc::new(Semaphore::new(MAX_TCP)),
        })
    }

    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// Serves `udp` and `tcp` until the returned tasks are aborted.
    pub fn spawn(
        self: &Arc<Self>,
        udp: Option<UdpSocket>,
        tcp: Option<TcpListener>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(socket) = udp {
            tasks.push(tokio::spawn(self.clone().serve_udp(Arc::new(socket))));
        }
        if let Some(listener) = tcp {
            tasks.push(tokio::spawn(self.clone().serve_tcp(listener)));
        }
        tasks
    }

    /// The reply to one query over `transport` (`None`: nothing is sent back).
    pub async fn reply(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        match self.step(packet, transport) {
            Step::Reply(bytes) => Some(bytes),
            Step::Drop => None,
            Step::Forward(req) => Some(self.forward(packet, &req, transport).await),
            Step::Remote(remote) => Some(self.remote(&remote).await),
        }
    }

    async fn remote(&self, r: &Remote) -> Vec<u8> {
        let Some(query) = r.req.queries.first() else {
            return self.finish(self.response(&r.req, ResponseCode::FormErr), r.transport);
        };
        let question = Question {
            name: query.name(),
            qtype: query.query_type(),
            zone: &r.zone,
        };
        let fetched = match crate::remote::path(&r.lookup) {
            Some(path) => self.state.fetch(r.datacenter.as_deref(), &path).await,
            None => Fetched::NotFound,
        };
        let found = crate::remote::answer(
            fetched,
            &self.config,
            &question,
            &r.lookup,
            r.datacenter.as_deref(),
        );
        let mut msg = self.response(&r.req, found.code);
        msg.metadata.authoritative = true;
        msg.answers = found.answers;
        msg.authorities = found.authorities;
        msg.additionals = found.additionals;
        self.finish(msg, r.transport)
    }

    async fn forward(&self, packet: &[u8], req: &Message, transport: Transport) -> Vec<u8> {
        let answer =
            recursor::forward(packet, &self.config.recursors, self.config.recursor_timeout).await;
        match answer {
            // This server recursed for the client: it says so (RA), whatever the recursor's own flags.
            Ok(mut bytes) => {
                if let Some(flags) = bytes.get_mut(3) {
                    *flags |= 0x80;
                }
                bytes
            }
            Err(e) => {
                tracing::debug!(error = %e, "a query outside the domain was not answered");
                let code = match e {
                    recursor::RecursorError::NoneConfigured => ResponseCode::Refused,
                    recursor::RecursorError::NoAnswer(_) => ResponseCode::ServFail,
                };
                self.finish(self.response(req, code), transport)
            }
        }
    }

    fn step(&self, packet: &[u8], transport: Transport) -> Step {
        // Fewer than 12 bytes has no header to answer; a packet with QR set is a response: never answer those.
        if packet.len() < 12 || packet[2] & 0x80 != 0 {
            return Step::Drop;
        }
        let req = match Message::from_vec(packet) {
            Ok(req) => req,
            Err(_) => {
                let id = u16::from_be_bytes([packet[0], packet[1]]);
                let msg = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return msg.to_vec().map_or(Step::Drop, Step::Reply);
            }
        };
        if req.metadata.message_type != MessageType::Query {
            return Step::Drop;
        }
        let transport = match transport {
            Transport::Udp { .. } => Transport::Udp {
                edns_payload: req.edns.as_ref().map(|e| e.max_payload()),
            },
            Transport::Tcp => Transport::Tcp,
        };
        if req.metadata.op_code != OpCode::Query {
            return Step::Reply(self.finish(self.response(&req, ResponseCode::NotImp), transport));
        }
        let [query] = req.queries.as_slice() else {
            return Step::Reply(self.finish(self.response(&req, ResponseCode::FormErr), transport));
        };
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return Step::Reply(self.finish(self.response(&req, ResponseCode::Refused), transport));
        }
        if matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR) {
            return Step::Reply(self.finish(self.response(&req, ResponseCode::NotImp), transport));
        }
        let (lookup, zone) = match parse(query.name(), &self.config) {
            Parsed::Outside => return Step::Forward(Box::new(req)),
            Parsed::Unknown { zone } => {
                let mut msg = self.response(&req, ResponseCode::NXDomain);
                msg.metadata.authoritative = true;
                msg.authorities
                    .extend(crate::answer::soa(&self.config, &zone));
                return Step::Reply(self.finish(msg, transport));
            }
            Parsed::Ours {
                lookup,
                zone,
                datacenter: Some(dc),
            } => {
                return Step::Remote(Box::new(Remote {
                    req,
                    lookup,
                    zone,
                    datacenter: Some(dc),
                    transport,
                }))
            }
            Parsed::Ours { lookup, zone, .. } => (lookup, zone),
        };
        if !self.fresh_enough() {
            return Step::Reply(
                self.finish(self.response(&req, ResponseCode::ServFail), transport),
            );
        }
        let question = Question {
            name: query.name(),
            qtype: query.query_type(),
            zone: &zone,
        };
        let found: Answer = answer(
            &self.state.store(),
            &self.config,
            &question,
            &lookup,
            &*self.state,
        );
        // A prepared query with nothing here and a failover: the leader runs it, failing it over.
        if let Lookup::Query { name } = &lookup {
            let fails_over = found.code == ResponseCode::NXDomain
                && self
                    .state
                    .store()
                    .resolve_prepared_query(name)
                    .is_ok_and(|q| q.service.failover.is_configured());
            if fails_over {
                return Step::Remote(Box::new(Remote {
                    req,
                    lookup,
                    zone,
                    datacenter: None,
                    transport,
                }));
            }
        }
        // An address no node or service has: the recursors may know it.
        if matches!(lookup, Lookup::Reverse(_))
            && found.code == ResponseCode::NXDomain
            && !self.config.recursors.is_empty()
        {
            return Step::Forward(Box::new(req));
        }
        let mut msg = self.response(&req, found.code);
        msg.metadata.authoritative = true;
        msg.answers = found.answers;
        msg.authorities = found.authorities;
        msg.additionals = found.additionals;
        Step::Reply(self.finish(msg, transport))
    }

    /// `allow_stale` / `max_stale`: may this agent's copy of the state answer?
    fn fresh_enough(&self) -> bool {
        match self.state.staleness() {
            None => false,
            Some(age) if self.config.allow_stale => age <= self.config.max_stale,
            Some(age) => age.is_zero(),
        }
    }

    /// An empty response to `req` with `code`.
    fn response(&self, req: &Message, code: ResponseCode) -> Message {
        let mut msg = Message::response(req.metadata.id, req.metadata.op_code);
        msg.metadata.response_code = code;
        msg.metadata.recursion_desired = req.metadata.recursion_desired;
        msg.metadata.recursion_available = !self.config.recursors.is_empty();
        msg.add_queries(req.queries.iter().cloned());
        if req.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(OUR_PAYLOAD);
            msg.set_edns(edns);
        }
        msg
    }

    /// Encodes within what the transport allows; a message that cannot be encoded becomes SERVFAIL.
    fn finish(&self, msg: Message, transport: Transport) -> Vec<u8> {
        let (id, op) = (msg.metadata.id, msg.metadata.op_code);
        encode(msg, transport, &self.config).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "a DNS answer could not be encoded");
            Message::error_msg(id, op, ResponseCode::ServFail)
                .to_vec()
                .unwrap_or_default()
        })
    }

    async fn serve_udp(self: Arc<Self>, socket: Arc<UdpSocket>) {
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, peer) = match socket.recv_from(&mut buf).await {
                Ok(got) => got,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                    continue;
                }
            };
            let packet = &buf[..n];
            let udp = Transport::Udp { edns_payload: None };
            match self.step(packet, udp) {
                Step::Reply(bytes) => {
                    let _ = socket.send_to(&bytes, peer).await;
                }
                Step::Drop => {}
                Step::Remote(remote) => {
                    let Ok(permit) = self.forwards.clone().try_acquire_owned() else {
                        continue;
                    };
                    let (server, socket) = (self.clone(), socket.clone());
                    tokio::spawn(async move {
                        let bytes = server.remote(&remote).await;
                        let _ = socket.send_to(&bytes, peer).await;
                        drop(permit);
                    });
                }
                Step::Forward(req) => {
                    let Ok(permit) = self.forwards.clone().try_acquire_owned() else {
                        continue;
                    };
                    let (server, socket, packet) = (self.clone(), socket.clone(), packet.to_vec());
                    let transport = Transport::Udp {
                        edns_payload: req.edns.as_ref().map(|e| e.max_payload()),
                    };
                    tokio::spawn(async move {
                        let bytes = server.forward(&packet, &req, transport).await;
                        let _ = socket.send_to(&bytes, peer).await;
                        drop(permit);
                    });
                }
            }
        }
    }

    async fn serve_tcp(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.tcp_slots.clone().try_acquire_owned() else {
                continue;
            };
            let server = self.clone();
            tokio::spawn(async move {
                let _ = server.tcp_connection(stream).await;
                drop(permit);
            });
        }
    }

    /// Queries on one TCP connection, each a 2-byte length then the message, until the client closes or idles.
    async fn tcp_connection(&self, mut stream: TcpStream) -> std::io::Result<()> {
        loop {
            let mut len = [0u8; 2];
            match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
                Ok(Ok(_)) => {}
                _ => return Ok(()),
            }
            let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
            match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await {
                Ok(Ok(_)) => {}
                _ => return Ok(()),
            }
            let Some(reply) = self.reply(&packet, Transport::Tcp).await else {
                return Ok(());
            };
            let Ok(reply_len) = u16::try_from(reply.len()) else {
                return Ok(());
            };
            stream.write_all(&reply_len.to_be_bytes()).await?;
            stream.write_all(&reply).await?;
        }
    }
}
