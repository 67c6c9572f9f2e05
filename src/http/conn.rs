//! The client connections of one core: what each is doing, the timeouts that close
//! silent, slow and idle ones, and making room at `max-connections-per-core`.
//!
//! A connection is always in one phase:
//! - `Opening`: accepted, no request yet. Closed after `header-read-timeout-ms`
//!   counted from the accept, whether it sent nothing or a head too slowly (Go's
//!   `ReadHeaderTimeout` for a first request);
//! - `Head`: a keep-alive connection received the first bytes of its next request;
//!   closed if the head is not complete `header-read-timeout-ms` after them;
//! - `Busy`: a request is being served (its body has its own bound,
//!   `body-read-timeout-ms`, in `read_body`);
//! - `Idle`: between requests; closed after `idle-timeout-ms`.
//!
//! Each connection's task races hyper's connection future against a watchdog
//! ([`watch`]) that sleeps until the phase's deadline and closes the connection (drops
//! hyper's future, which closes the socket) if the phase has not moved on; a phase
//! change only stamps the time, so the watchdog wakes at most once per timeout.
//!
//! At the connection limit a new connection closes the one that has waited longest
//! without a request in progress (`Opening`, `Head` or `Idle`): thousands of silent
//! connections cannot lock a new client out. Only when every connection is `Busy` is
//! the new one refused (503, `Connection: close`).
//!
//! **Invariant:** the table holds exactly the connections this core serves; an entry
//! leaves it (and the core's count in `connection_counts`) when its task ends.

use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Opening,
    Head,
    Busy,
    Idle,
}

/// One client connection's phase, shared by its IO adapter, its service and its
/// watchdog.
pub struct Connection {
    phase: Cell<Phase>,
    since: Cell<Instant>,
}

impl Connection {
    fn set(&self, phase: Phase) {
        self.phase.set(phase);
        self.since.set(Instant::now());
    }

    /// Bytes arrived from the client: an idle connection starts its next request head.
    pub fn bytes_arrived(&self) {
        if self.phase.get() == Phase::Idle {
            self.set(Phase::Head);
        }
    }

    /// A request head is complete: the request is being served.
    pub fn request_started(&self) {
        self.set(Phase::Busy);
    }

    /// The answer is ready: the connection waits for the next request.
    pub fn request_finished(&self) {
        self.set(Phase::Idle);
    }

    pub fn phase(&self) -> Phase {
        self.phase.get()
    }
}

/// The three timeouts, from `[http]`.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// Why the watchdog closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// No complete request head in time (`Opening` or `Head`).
    HeaderTimeout,
    IdleTimeout,
    /// Closed to make room for a new connection.
    Evicted,
}

struct Entry {
    connection: Rc<Connection>,
    evict: Option<oneshot::Sender<()>>,
}

/// This core's connections.
pub struct Connections {
    core: usize,
    max: usize,
    counts: Arc<Vec<AtomicUsize>>,
    table: RefCell<BTreeMap<u64, Entry>>,
    next_id: Cell<u64>,
}

/// A connection's place in the table; leaving it (drop) removes the entry and
/// uncounts the connection.
pub struct Registration {
    connections: Rc<Connections>,
    id: u64,
    pub connection: Rc<Connection>,
    pub evicted: oneshot::Receiver<()>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.table.borrow_mut().remove(&self.id);
        self.connections.counts[self.connections.core].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connections {
    /// `counts[core]` is this core's entry of the node's open-connection counts (core
    /// 0 reads them to pick where to hand a connection).
    pub fn new(core: usize, max: usize, counts: Arc<Vec<AtomicUsize>>) -> Rc<Connections> {
        Rc::new(Connections {
            core,
            max,
            counts,
            table: RefCell::new(BTreeMap::new()),
            next_id: Cell::new(0),
        })
    }

    pub fn len(&self) -> usize {
        self.table.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a new connection (already counted in `counts` by whoever handed it
    /// here). At the limit, first closes the connection that has waited longest
    /// without a request in progress; `None` when every connection is busy (the caller
    /// refuses the new one and must uncount it with [`Connections::uncount`]).
    pub fn register(self: &Rc<Self>) -> Option<Registration> {
        if self.len() >= self.max && !self.evict_longest_waiting() {
            return None;
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let connection = Rc::new(Connection {
            phase: Cell::new(Phase::Opening),
            since: Cell::new(Instant::now()),
        });
        let (tx, rx) = oneshot::channel();
        self.table.borrow_mut().insert(
            id,
            Entry {
                connection: connection.clone(),
                evict: Some(tx),
            },
        );
        Some(Registration {
            connections: self.clone(),
            id,
            connection,
            evicted: rx,
        })
    }

    /// Forgets a connection that was counted but never registered.
    pub fn uncount(&self) {
        self.counts[self.core].fetch_sub(1, Ordering::Relaxed);
    }

    /// Signals the connection that has waited longest without a request in progress
    /// to close (its task closes it at once); false if every connection is busy. A
    /// connection already signalled is not picked again.
    fn evict_longest_waiting(&self) -> bool {
        let mut table = self.table.borrow_mut();
        let victim = table
            .iter()
            .filter(|(_, e)| e.evict.is_some() && e.connection.phase() != Phase::Busy)
            .min_by_key(|(_, e)| e.connection.since.get())
            .map(|(id, _)| *id);
        match victim.and_then(|id| table.get_mut(&id)) {
            Some(entry) => {
                if let Some(tx) = entry.evict.take() {
                    let _ = tx.send(());
                }
                true
            }
            None => false,
        }
    }
}

/// Watches one connection: resolves when it must close (its phase overstayed its
/// timeout, or it was evicted). Never resolves while it keeps to its bounds.
pub async fn watch(
    connection: &Connection,
    evicted: &mut oneshot::Receiver<()>,
    timeouts: Timeouts,
) -> Closed {
    loop {
        let (phase, since) = (connection.phase(), connection.since.get());
        let allowed = match phase {
            Phase::Opening | Phase::Head => timeouts.header_read,
            Phase::Idle => timeouts.idle,
            // A request's own bounds apply; look again when a timeout could next run out.
            Phase::Busy => timeouts.header_read.min(timeouts.idle),
        };
        let wait = match phase {
            Phase::Busy => allowed,
            _ => (since + allowed).saturating_duration_since(Instant::now()),
        };
        let woke_by_eviction = futures_lite::future::or(
            async {
                // A dropped sender (the entry left the table) is not an eviction.
                matches!((&mut *evicted).await, Ok(()))
            },
            async {
                glommio::timer::sleep(wait).await;
                false
            },
        )
        .await;
        if woke_by_eviction {
            return Closed::Evicted;
        }
        let unchanged = connection.phase() == phase && connection.since.get() == since;
        if unchanged && Instant::now() >= since + allowed {
            match phase {
                Phase::Opening | Phase::Head => return Closed::HeaderTimeout,
                Phase::Idle => return Closed::IdleTimeout,
                Phase::Busy => {}
            }
        }
    }
}
