//! Closing connections that hold a slot without using it, at no cost per request. hyper's own
//! `header_read_timeout` arms a timer and forces an extra read after every response, which measurably slowed the
//! wake-up of 1,000 blocking queries; here each connection keeps a few atomics instead, and one sweeper task per
//! listener looks at all of them a few times per timeout:
//! - a connection with no request in flight and no byte read or written for `timeout` is closed (idle keep-alive
//!   connections, sockets that never send anything);
//! - a request head that has not been completed `timeout` after its first byte is cut (slowloris);
//! - a connection whose answer could not be written for `timeout` is cut, request in flight or not: its client has
//!   stopped reading (a monitor nobody reads would otherwise hold its slot for ever).
//!
//! A request in flight (a blocking query parked for minutes, a large body being read by its client) is otherwise
//! never cut.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The connections of one listener, and its clock.
pub struct IdleGuard {
    timeout: Duration,
    started: Instant,
    conns: Mutex<HashMap<u64, Weak<ConnState>>>,
    next_id: AtomicU64,
}

/// One connection's activity. Times are milliseconds since the guard started; 0 in `head_started` means no head
/// is being read.
pub struct ConnState {
    last_activity: AtomicU64,
    head_started: AtomicU64,
    in_flight: AtomicU64,
    /// Since when a write has been waiting for the client to read (0: none is).
    write_blocked: AtomicU64,
    /// The guard's clock origin, copied: reads and writes stamp activity without touching the guard's reference
    /// count, which every connection shares.
    started: Instant,
    guard: Weak<IdleGuard>,
    id: u64,
    /// Notified when the sweeper wants the connection gone.
    pub close: Notify,
}

impl IdleGuard {
    /// A guard closing connections idle (or stuck in a request head) for `timeout`; its sweeper runs until the
    /// guard is dropped.
    pub fn start(timeout: Duration) -> Arc<IdleGuard> {
        let guard = Arc::new(IdleGuard {
            timeout,
            started: Instant::now(),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(sweep(Arc::downgrade(&guard)));
        guard
    }

    fn now(&self) -> u64 {
        // Never 0, which `head_started` uses for "none".
        self.started.elapsed().as_millis() as u64 + 1
    }

    /// Tracks a new connection.
    pub fn track(self: &Arc<Self>) -> Arc<ConnState> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            last_activity: AtomicU64::new(self.now()),
            head_started: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            started: self.started,
            guard: Arc::downgrade(self),
            id,
            close: Notify::new(),
        });
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::downgrade(&state));
        state
    }

    /// Connections that should be closed now.
    fn due(&self) -> Vec<Arc<ConnState>> {
        let now = self.now();
        let limit = self.timeout.as_millis() as u64;
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|_, c| c.strong_count() > 0);
        conns
            .values()
            .filter_map(Weak::upgrade)
            .filter(|c| {
                let blocked = c.write_blocked.load(Ordering::Acquire);
                if blocked != 0 && now.saturating_sub(blocked) >= limit {
                    return true;
                }
                if c.in_flight.load(Ordering::Acquire) > 0 {
                    return false;
                }
                let head = c.head_started.load(Ordering::Acquire);
                let since = if head != 0 {
                    head
                } else {
                    c.last_activity.load(Ordering::Acquire)
                };
                now.saturating_sub(since) >= limit
            })
            .collect()
    }
}

async fn sweep(guard: Weak<IdleGuard>) {
    let every = match guard.upgrade() {
        Some(g) => (g.timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
        None => return,
    };
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let Some(g) = guard.upgrade() else { return };
        for conn in g.due() {
            conn.close.notify_one();
        }
    }
}

impl ConnState {
    fn now(&self) -> u64 {
        // As `IdleGuard::now`: never 0.
        self.started.elapsed().as_millis() as u64 + 1
    }

    fn read(&self) {
        let now = self.now();
        self.last_activity.store(now, Ordering::Release);
        // The first byte with no request in flight starts a request head.
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self
                .head_started
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn wrote(&self) {
        self.last_activity.store(self.now(), Ordering::Release);
    }

    /// Records the outcome of a write: progress clears the stall, a write that must wait starts one.
    fn write_polled(&self, polled: &Poll<std::io::Result<usize>>) {
        match polled {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.write_blocked.store(0, Ordering::Release);
                self.wrote();
            }
            Poll::Pending => {
                let _ = self.write_blocked.compare_exchange(
                    0,
                    self.now(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            _ => {}
        }
    }

    /// A request's head has been read and its handler runs: until the returned token drops, the connection is busy.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        InFlight(self.clone())
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        if let Some(g) = self.guard.upgrade() {
            g.conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
        }
    }
}

/// A request in flight on a connection.
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.wrote();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks a response whose body is streamed for as long as the client listens (`/v1/agent/monitor`): its
/// connection counts as busy until the body ends, so a quiet stream is not cut as idle. Other responses are not
/// held: a client that stops reading one is cut by the idle timeout as before.
#[derive(Debug, Clone, Copy)]
pub struct LongLived;

/// A response body, holding its connection busy when the response is [`LongLived`].
pub struct HeldBody {
    inner: axum::body::Body,
    _busy: Option<InFlight>,
}

impl HeldBody {
    pub fn new(inner: axum::body::Body, busy: Option<InFlight>) -> HeldBody {
        HeldBody { inner, _busy: busy }
    }
}

impl hyper::body::Body for HeldBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A stream whose reads and writes count as activity of its connection.
pub struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, state: Arc<ConnState>) -> Tracked<S> {
        Tracked { inner, state }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        this.state.write_polled(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.state.write_polled(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_and_half_sent_connections_are_due_and_busy_ones_are_not() {
        let guard = IdleGuard::start(Duration::from_millis(50));
        let idle = guard.track();
        let busy = guard.track();
        let _request = busy.request();
        let slow = guard.track();
        tokio::time::sleep(Duration::from_millis(20)).await;
        slow.read(); // the first byte of a head
        let fresh = guard.track();
        tokio::time::sleep(Duration::from_millis(40)).await;
        slow.read(); // more bytes: still the same head
        let due: Vec<u64> = guard.due().iter().map(|c| c.id).collect();
        assert!(due.contains(&idle.id), "idle since the start");
        assert!(!due.contains(&busy.id), "a request in flight is never cut");
        assert!(!due.contains(&fresh.id), "not idle long enough");
        tokio::time::sleep(Duration::from_millis(15)).await;
        let due: Vec<u64> = guard.due().iter().map(|c| c.id).collect();
        assert!(
            due.contains(&slow.id),
            "a head trickling in is cut after the timeout"
        );
        drop(idle);
        assert_eq!(
            guard.conns.lock().unwrap().len(),
            3,
            "a closed connection is forgotten"
        );
    }

    #[tokio::test]
    async fn an_answer_its_client_stops_reading_is_cut_even_in_flight() {
        let guard = IdleGuard::start(Duration::from_millis(50));
        let stalled = guard.track();
        let _a = stalled.request();
        let reading = guard.track();
        let _b = reading.request();
        stalled.write_polled(&Poll::Pending);
        reading.write_polled(&Poll::Pending);
        tokio::time::sleep(Duration::from_millis(30)).await;
        reading.write_polled(&Poll::Ready(Ok(10)));
        tokio::time::sleep(Duration::from_millis(30)).await;
        let due: Vec<u64> = guard.due().iter().map(|c| c.id).collect();
        assert!(
            due.contains(&stalled.id),
            "no byte taken for longer than the timeout"
        );
        assert!(
            !due.contains(&reading.id),
            "a client that reads keeps its answer"
        );
    }
}
