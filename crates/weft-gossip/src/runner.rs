//! The gossip task: one UDP socket, one foca instance, timers, and the member table.
//!
//! Frames are one kind byte and a body: `0` carries a foca packet; `1` carries a leave notice (a member's name),
//! sent to everyone by a member about to leave (or by `force-leave` on its behalf), so the down state that follows
//! is recorded as "left" rather than "failed"; `2` and `3` are the coordinate probes' ping and pong (see
//! `coordinates`); `4` and `5` are keyring queries and their answers (see `keyring_query`). With a keyring, the
//! whole frame is sealed.

use crate::member::{Member, MemberInfo, Status};
use crate::{Command, GossipConfig};
use foca::{AccumulatingRuntime, Config, Foca, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::SmallRng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

const FOCA: u8 = 0;
const LEAVE: u8 = 1;
const PING: u8 = 2;
const PONG: u8 = 3;
const KEY_QUERY: u8 = 4;
const KEY_REPLY: u8 = 5;
/// How often this agent measures a round trip for its network coordinate, at most.
const COORDINATE_PROBE_EVERY: Duration = Duration::from_secs(1);
/// Seeds are announced to this often until some member answers.
const JOIN_RETRY: Duration = Duration::from_secs(2);

type Swim = Foca<Member, PostcardCodec, SmallRng, crate::events::EventHandler>;

struct State {
    config: GossipConfig,
    socket: UdpSocket,
    local: Member,
    foca: Swim,
    runtime: AccumulatingRuntime<Member>,
    table: BTreeMap<String, MemberInfo>,
    /// Names that announced they are leaving: their coming "down" is a "left".
    leaving: BTreeSet<String>,
    seeds: Vec<SocketAddr>,
    timers: mpsc::Sender<Timer<Member>>,
    members: watch::Sender<Vec<MemberInfo>>,
    undecryptable: u64,
    /// Shared with the event handler inside foca: the Lamport clock and the IDs seen.
    events: std::sync::Arc<std::sync::Mutex<crate::events::Seen>>,
    probes: crate::coordinates::Probes,
    coordinate: watch::Sender<weft_types::coordinate::Coordinate>,
    key_queries: crate::keyring_query::Queries,
    stats: std::sync::Arc<crate::GossipStats>,
    /// foca's settings, kept to change how often updates and events are retransmitted as the cluster grows.
    foca_config: Config,
}

/// Where the gossip task reports what it learns.
pub(crate) struct Outputs {
    pub members: watch::Sender<Vec<MemberInfo>>,
    pub deliver: mpsc::Sender<weft_types::event::UserEvent>,
    pub coordinate: watch::Sender<weft_types::coordinate::Coordinate>,
    pub stats: std::sync::Arc<crate::GossipStats>,
    pub peers: crate::coordinates::PeerCoordinates,
}

pub(crate) async fn run(
    config: GossipConfig,
    socket: UdpSocket,
    local: Member,
    mut commands: mpsc::Receiver<Command>,
    outputs: Outputs,
) {
    let Outputs {
        members,
        deliver,
        coordinate,
        stats,
        peers,
    } = outputs;
    let mut foca_config = Config::new_lan(NonZeroU32::MIN.saturating_add(7));
    foca_config.probe_period = config.probe_period;
    foca_config.probe_rtt = config.probe_period / 2;
    foca_config.suspect_to_down_after = config.probe_period * 6;
    let rng: SmallRng = rand::make_rng();
    let events = std::sync::Arc::<std::sync::Mutex<crate::events::Seen>>::default();
    let handler = crate::events::EventHandler {
        seen: events.clone(),
        deliver,
    };
    let foca = Foca::with_custom_broadcast(
        local.clone(),
        foca_config.clone(),
        rng,
        PostcardCodec,
        handler,
    );
    let (timers, mut timer_rx) = mpsc::channel(1024);
    let mut table = BTreeMap::new();
    table.insert(local.name.clone(), MemberInfo::alive(&local));
    let mut state = State {
        config,
        socket,
        local,
        foca,
        runtime: AccumulatingRuntime::new(),
        table,
        leaving: BTreeSet::new(),
        seeds: Vec::new(),
        timers,
        members,
        undecryptable: 0,
        events,
        probes: crate::coordinates::Probes::with_peers(peers),
        coordinate,
        key_queries: Default::default(),
        stats,
        foca_config,
    };
    state.fit_retransmissions();
    // foca schedules its own probe timer on the first interaction; gossip periodically as memberlist does.
    let mut gossip_tick = tokio::time::interval(Duration::from_millis(200));
    let mut join_tick = tokio::time::interval(JOIN_RETRY);
    let mut reap_tick = tokio::time::interval(Duration::from_secs(10));
    // One round-trip probe a second at most, as Serf's coordinates ride on its one-second LAN probes: each costs a
    // ping and a pong of a few hundred bytes, and faster probing would not make the estimate better, only dearer.
    let mut coordinate_tick =
        tokio::time::interval(state.config.probe_period.max(COORDINATE_PROBE_EVERY));
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            received = state.socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = received {
                    let frame = buf[..n].to_vec();
                    state.receive(&frame, from);
                }
            }
            Some(timer) = timer_rx.recv() => {
                let _ = state.foca.handle_timer(timer, &mut state.runtime);
            }
            command = commands.recv() => match command {
                None => return,
                Some(Command::Join(seeds)) => {
                    state.seeds = seeds;
                    state.announce_to_seeds();
                }
                Some(Command::Leave(done)) => {
                    state.leave().await;
                    let _ = done.send(());
                    return;
                }
                Some(Command::Fire(event, done)) => {
                    let _ = done.send(state.fire(event));
                }
                Some(Command::ForceLeave(name, done)) => {
                    let found = state.force_leave(&name);
                    let _ = done.send(found);
                }
                Some(Command::Keyring(op, done)) => state.keyring_query(op, done).await,
            },
            _ = gossip_tick.tick() => {
                let _ = state.foca.gossip(&mut state.runtime);
                for (query, to) in state.key_queries.tick() {
                    state.send_frame(to, KEY_QUERY, &query).await;
                }
            }
            _ = join_tick.tick() => {
                if state.foca.num_members() == 0 {
                    state.announce_to_seeds();
                }
            }
            _ = reap_tick.tick() => state.reap(),
            _ = coordinate_tick.tick() => state.probe_coordinate().await,
        }
        state.drain().await;
    }
}

/// How many times an update is sent on in a cluster of `members`: 6 x log10(n + 1), at least 4. memberlist's
/// multiplier of 4 left about one agent in a thousand without a user event among 50 (each agent hears an update
/// about as many times as it is sent on, so the chance of hearing nothing falls as e^-tx); 6 makes that rare
/// (measured: `weft-bench surface`) for a few hundred bytes more per update.
pub(crate) fn retransmissions(members: usize) -> std::num::NonZeroU8 {
    let n = ((members as f64 + 1.0).log10() * 6.0)
        .ceil()
        .clamp(4.0, 255.0) as u8;
    std::num::NonZeroU8::new(n).unwrap_or(std::num::NonZeroU8::MIN)
}

impl State {
    /// Stamps the event with the next Lamport time and hands it to foca, whose handler delivers it here too.
    fn fire(
        &mut self,
        mut event: weft_types::event::UserEvent,
    ) -> Result<weft_types::event::UserEvent, String> {
        event.ltime = self.events.lock().unwrap_or_else(|p| p.into_inner()).ltime + 1;
        let bytes = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
        match self.foca.add_broadcast(&bytes) {
            Ok(_) => Ok(event),
            Err(e) => Err(e.to_string()),
        }
    }

    fn announce_to_seeds(&mut self) {
        for seed in self.seeds.clone() {
            if seed == self.local.addr {
                continue;
            }
            // foca addresses members by identity; a placeholder with the seed's address is replaced (renamed)
            // by the real identity when the seed answers.
            let placeholder = Member {
                name: String::new(),
                addr: seed,
                bump: 0,
                tags: self.local.tags.clone(),
            };
            let _ = self.foca.announce(placeholder, &mut self.runtime);
        }
    }

    fn receive(&mut self, frame: &[u8], from: SocketAddr) {
        self.stats
            .received_bytes
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        let plain = match &self.config.keyring {
            Some(k) => match k.open(frame) {
                Some(p) => p,
                None => {
                    self.undecryptable += 1;
                    if self.undecryptable.is_power_of_two() {
                        tracing::warn!(%from, count = self.undecryptable, "dropped a gossip packet that does not decrypt (wrong or missing -encrypt key?)");
                    }
                    return;
                }
            },
            None => frame.to_vec(),
        };
        if matches!(plain.first(), Some(&PING | &PONG)) {
            self.stats
                .coordinate_received_bytes
                .fetch_add(frame.len() as u64, Ordering::Relaxed);
        }
        match plain.split_first() {
            Some((&FOCA, body)) => {
                if let Err(e) = self.foca.handle_data(body, &mut self.runtime) {
                    tracing::debug!(%from, error = %e, "ignored a gossip packet");
                }
            }
            Some((&LEAVE, body)) => {
                let name = String::from_utf8_lossy(body).to_string();
                self.mark_leaving(&name);
            }
            Some((&PING, body)) => self.answer_ping(body),
            Some((&KEY_QUERY, body)) => self.answer_key_query(body),
            Some((&KEY_REPLY, body)) => {
                if let Ok(reply) = serde_json::from_slice(body) {
                    self.key_queries.answered(reply);
                }
            }
            Some((&PONG, body)) => {
                let Ok(pong) = serde_json::from_slice::<crate::coordinates::Pong>(body) else {
                    return;
                };
                let mut random = || rand::random::<f64>();
                if self.probes.answered(pong, &mut random) {
                    self.coordinate
                        .send_replace(self.probes.coordinate().clone());
                }
            }
            _ => tracing::debug!(%from, "ignored a frame that is not Weft gossip"),
        }
    }

    /// Pings one random alive member for a round-trip sample.
    async fn probe_coordinate(&mut self) {
        let alive: Vec<(String, SocketAddr)> = self
            .table
            .values()
            .filter(|i| i.status == Status::Alive && i.member.name != self.local.name)
            .map(|i| (i.member.name.clone(), i.member.addr))
            .collect();
        if alive.is_empty() {
            return;
        }
        let (name, addr) = &alive[rand::random_range(0..alive.len())];
        let ping = self.probes.ping(name, &self.local.name);
        if let Ok(body) = serde_json::to_vec(&ping) {
            self.send_frame(*addr, PING, &body).await;
        }
    }

    /// Answers a ping with this agent's coordinate, at the pinging member's gossip address (as every gossip
    /// answer goes): never to the packet's apparent source, since a pong is larger than a ping and answering any
    /// address would make this agent an amplifier for spoofed packets.
    fn answer_ping(&mut self, body: &[u8]) {
        let Ok(ping) = serde_json::from_slice::<crate::coordinates::Ping>(body) else {
            return;
        };
        let Some(to) = self
            .table
            .get(&ping.name)
            .filter(|i| i.status == Status::Alive && ping.name != self.local.name)
            .map(|i| i.member.addr)
        else {
            return;
        };
        let Some(pong) = self.probes.pong(&ping, &self.local.name) else {
            return;
        };
        if let Some(frame) = serde_json::to_vec(&pong)
            .ok()
            .and_then(|b| self.frame(PONG, &b))
        {
            if self.socket.try_send_to(&frame, to).is_ok() {
                self.count_sent(PONG, frame.len());
            }
        }
    }

    /// Applies a keyring operation here and asks every alive member to apply it too; `done` gets the answers.
    async fn keyring_query(
        &mut self,
        op: crate::keyring_query::KeyOp,
        done: tokio::sync::oneshot::Sender<
            Result<crate::keyring_query::KeyringAnswer, crate::GossipError>,
        >,
    ) {
        if self.key_queries.busy() {
            let _ = done.send(Err(crate::GossipError::Busy));
            return;
        }
        let local =
            crate::keyring_query::apply(self.config.keyring.as_ref(), &op, &self.local.name);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Without encryption nothing is sent: an unsealed frame must never change anyone's keys.
        let members = match self.config.keyring {
            Some(_) => self.alive_others(),
            None => BTreeMap::new(),
        };
        if let Some((query, addresses)) =
            self.key_queries
                .start(&self.local.name, op, local, members, tx)
        {
            for to in addresses {
                self.send_frame(to, KEY_QUERY, &query).await;
            }
        }
        tokio::spawn(async move {
            let answer = rx.await.map_err(|_| crate::GossipError::Stopped);
            let _ = done.send(answer);
        });
    }

    /// Applies another member's keyring query (once; a repeat gets the same answer) and answers at that member's
    /// gossip address. Only sealed frames get here when encryption is on, and without it nothing is changed.
    fn answer_key_query(&mut self, body: &[u8]) {
        let Ok(query) = serde_json::from_slice::<crate::keyring_query::KeyQuery>(body) else {
            return;
        };
        let Some(to) = self
            .table
            .get(&query.from)
            .filter(|i| i.status == Status::Alive && query.from != self.local.name)
            .map(|i| i.member.addr)
        else {
            return;
        };
        let keyring = self.config.keyring.clone();
        let name = self.local.name.clone();
        let Some(answer) = self.key_queries.receive(&query, |op| {
            crate::keyring_query::apply(keyring.as_ref(), op, &name)
        }) else {
            tracing::debug!(from = %query.from, "ignored a stale keyring query");
            return;
        };
        let reply = crate::keyring_query::KeyReply {
            id: query.id,
            answer,
        };
        if let Some(frame) = serde_json::to_vec(&reply)
            .ok()
            .and_then(|b| self.frame(KEY_REPLY, &b))
        {
            if self.socket.try_send_to(&frame, to).is_ok() {
                self.count_sent(KEY_REPLY, frame.len());
            }
        }
    }

    /// Every alive member but this one, by name, with its gossip address.
    fn alive_others(&self) -> BTreeMap<String, SocketAddr> {
        self.table
            .values()
            .filter(|i| i.status == Status::Alive && i.member.name != self.local.name)
            .map(|i| (i.member.name.clone(), i.member.addr))
            .collect()
    }

    fn mark_leaving(&mut self, name: &str) {
        if name == self.local.name {
            return;
        }
        self.leaving.insert(name.to_string());
        if let Some(info) = self.table.get_mut(name) {
            if info.status == Status::Failed {
                info.status = Status::Left;
                info.since = SystemTime::now();
                self.publish();
            }
        }
    }

    /// A frame of `kind` around `body`, sealed when there is a keyring (`None` only if sealing fails).
    fn frame(&self, kind: u8, body: &[u8]) -> Option<Vec<u8>> {
        let mut frame = Vec::with_capacity(body.len() + 1);
        frame.push(kind);
        frame.extend_from_slice(body);
        match &self.config.keyring {
            Some(k) => k.seal(&frame),
            None => Some(frame),
        }
    }

    async fn send_frame(&mut self, to: SocketAddr, kind: u8, body: &[u8]) {
        if let Some(frame) = self.frame(kind, body) {
            if self.socket.send_to(&frame, to).await.is_ok() {
                self.count_sent(kind, frame.len());
            }
        }
    }

    fn count_sent(&self, kind: u8, bytes: usize) {
        self.stats
            .sent_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        if kind == PING || kind == PONG {
            self.stats
                .coordinate_sent_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Carries out what foca asked for: packets, timers, notifications.
    async fn drain(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.send_frame(to.addr, FOCA, &data).await;
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let tx = self.timers.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = tx.send(timer).await;
            });
        }
        let mut changed = false;
        while let Some(n) = self.runtime.to_notify() {
            changed |= self.apply(n);
        }
        if changed {
            self.publish();
            self.fit_retransmissions();
        }
    }

    /// Retransmits membership updates and user events as often as the cluster's size needs: set for a small
    /// cluster, an event fired among 50 agents missed some of them.
    fn fit_retransmissions(&mut self) {
        let alive = self
            .table
            .values()
            .filter(|i| i.status == Status::Alive)
            .count();
        let wanted = retransmissions(alive);
        if wanted != self.foca_config.max_transmissions {
            let mut config = self.foca_config.clone();
            config.max_transmissions = wanted;
            if self.foca.set_config(config.clone()).is_ok() {
                self.foca_config = config;
            }
        }
    }

    fn apply(&mut self, n: OwnedNotification<Member>) -> bool {
        match n {
            OwnedNotification::MemberUp(m) => {
                if m.name.is_empty() {
                    return false;
                }
                self.leaving.remove(&m.name);
                self.set(m, Status::Alive);
                true
            }
            OwnedNotification::MemberDown(m) => {
                let status = if self.leaving.contains(&m.name) {
                    Status::Left
                } else {
                    Status::Failed
                };
                self.set(m, status);
                true
            }
            OwnedNotification::Rename(_, new) => {
                if new.name.is_empty() {
                    return false;
                }
                let status = self
                    .table
                    .get(&new.name)
                    .map(|i| i.status)
                    .unwrap_or(Status::Alive);
                self.set(new, status);
                true
            }
            OwnedNotification::Defunct => {
                // Declared down by the others: come back with a renewed identity.
                tracing::warn!("this agent was declared failed by the cluster; rejoining");
                let _ = self.foca.reuse_down_identity();
                self.announce_to_seeds();
                false
            }
            _ => false,
        }
    }

    fn set(&mut self, member: Member, status: Status) {
        if member.name == self.local.name || member.name.is_empty() {
            return;
        }
        let entry = self.table.entry(member.name.clone());
        let info = entry.or_insert_with(|| MemberInfo::alive(&member));
        if info.status != status {
            info.since = SystemTime::now();
        }
        info.member = member;
        info.status = status;
    }

    fn publish(&self) {
        self.members
            .send_replace(self.table.values().cloned().collect());
    }

    fn force_leave(&mut self, name: &str) -> bool {
        let failed = self
            .table
            .get(name)
            .is_some_and(|i| i.status != Status::Alive);
        if !failed {
            return false;
        }
        self.mark_leaving(name);
        self.tell_everyone_leaving(name);
        true
    }

    /// Sends a leave notice for `name` to every alive member but this one.
    fn tell_everyone_leaving(&self, name: &str) {
        let Some(frame) = self.frame(LEAVE, name.as_bytes()) else {
            return;
        };
        for info in self.table.values() {
            if info.status == Status::Alive
                && info.member.name != self.local.name
                && self.socket.try_send_to(&frame, info.member.addr).is_ok()
            {
                self.count_sent(LEAVE, frame.len());
            }
        }
    }

    async fn leave(&mut self) {
        let name = self.local.name.clone();
        self.tell_everyone_leaving(&name);
        let _ = self.foca.leave_cluster(&mut self.runtime);
        self.drain().await;
    }

    /// Forgets members that failed longer ago than `reconnect_timeout`, and members that left an hour ago.
    fn reap(&mut self) {
        let now = SystemTime::now();
        let timeout = self.config.reconnect_timeout;
        let before = self.table.len();
        self.table.retain(|_, i| {
            let age = now.duration_since(i.since).unwrap_or_default();
            match i.status {
                Status::Alive => true,
                // Kept a minute past the timeout, so the leader sees the age and reaps the node first.
                Status::Failed => age < timeout + Duration::from_secs(60),
                Status::Left => age < timeout.min(Duration::from_secs(3600)),
            }
        });
        if self.table.len() != before {
            let table = &self.table;
            self.probes
                .peers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|name, _| table.contains_key(name));
            self.publish();
        }
    }
}
