//! A pipelined client connection to one core of another node: several requests in
//! flight at once, their answers matched to them by request id.
//!
//! Shape: callers send through the connection's [`FrameSink`] (a whole frame per call,
//! in call order, written by one flusher task); one reader task reads answer frames and
//! completes the waiting caller's oneshot by request id. The ShardWriter's pool decides
//! which connection a request goes on and bounds how many wait (see `shard_writer`).
//!
//! Limits, and what happens at each:
//! - In flight: at most `max-inflight-requests-per-connection` requests (counting ones
//!   whose caller gave up and whose answer has not come yet: they still occupy the
//!   peer). The pool never sends on a full connection; `send` asserts it in debug builds.
//! - Per request: the caller waits at most `write-timeout-ms`. That request then fails
//!   (`Timeout`); its late answer is dropped when it comes (counted as a late reply).
//!   If the connection has not delivered a single frame since that request was sent,
//!   the connection is stalled, not just the request: it is closed, and every request
//!   on it fails with `ConnError::Timeout`.
//! - Connection errors (read or write error, end of stream, a bad frame, an `Error`
//!   frame without a request id, an answer nobody asked for): the connection closes
//!   (socket shut down both ways), every request in flight on it fails at once with the
//!   same typed `ConnError`, and the pool drops it; the next request dials afresh.
//! - Memory: the send buffer holds at most the in-flight requests' frames, the read
//!   buffer one frame, the pending map one entry per request in flight.
//!
//! Back of the envelope: a 5000-line TSBS batch is ~1.8 MB; split over 3 shards, a
//! forwarded shard batch is ~0.6 MB, so 16 in flight hold ~10 MB of frames per
//! connection at most. On loopback one such frame takes ~0.2 ms to write; one answer
//! is 23-30 bytes, so the reader's cost per request is a hash-map removal and a wake.
//!
//! **Invariant:** a request id is registered before its frame is queued and removed
//! exactly once: by its answer, or by the connection closing. Nothing else completes
//! a caller's oneshot.

use crate::net::conn::{error_frame_text, ConnError, FrameReader, FrameSink};
use crate::net::wire::{EncodeMessage, Frame, FrameKind};
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Instant;

/// What a caller receives: the answer frame, or why the connection failed.
pub type Reply = Result<Frame, ConnError>;

/// Events a connection reports to the pool that owns it.
pub trait ConnEvents {
    /// A request left the connection (answered or failed): a waiting caller may send.
    fn slot_freed(&self);
    /// The connection closed for `error`, failing `failed_requests` requests.
    fn closed(&self, error: &ConnError, failed_requests: usize);
    /// An answer came for a request whose caller had given up (it was dropped).
    fn late_reply(&self);
}

/// One pipelined connection.
pub struct PipelinedConn {
    peer: String,
    max_in_flight: usize,
    sink: FrameSink,
    /// In flight, by request id; `None` once the caller gave up (the answer is dropped).
    pending: RefCell<HashMap<u64, Option<oneshot::Sender<Reply>>>>,
    failed: RefCell<Option<ConnError>>,
    last_frame_at: Cell<Instant>,
    events: Weak<dyn ConnEvents>,
}

impl PipelinedConn {
    /// Starts the reader and flusher tasks of an authenticated connection.
    pub fn start(
        reader: FrameReader,
        sink: FrameSink,
        flusher: impl std::future::Future<Output = Result<(), ConnError>> + 'static,
        max_in_flight: usize,
        events: Weak<dyn ConnEvents>,
    ) -> Rc<PipelinedConn> {
        let conn = Rc::new(PipelinedConn {
            peer: sink.peer(),
            max_in_flight,
            sink,
            pending: RefCell::new(HashMap::with_capacity(max_in_flight)),
            failed: RefCell::new(None),
            last_frame_at: Cell::new(Instant::now()),
            events,
        });
        let writing = conn.clone();
        glommio::spawn_local(async move {
            if let Err(e) = flusher.await {
                writing.fail(e);
            }
        })
        .detach();
        glommio::spawn_local(read_answers(conn.clone(), reader)).detach();
        conn
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Requests in flight, including abandoned ones whose answer has not come.
    pub fn in_flight(&self) -> usize {
        self.pending.borrow().len()
    }

    pub fn has_room(&self) -> bool {
        self.in_flight() < self.max_in_flight
    }

    pub fn is_failed(&self) -> bool {
        self.failed.borrow().is_some()
    }

    /// Registers `request_id` and queues its frame; the receiver completes with the
    /// answer or the connection's failure. Synchronous, so a pool that checked
    /// `has_room` just before cannot be overtaken.
    pub fn send<M: EncodeMessage>(
        &self,
        request_id: u64,
        message: &M,
    ) -> Result<oneshot::Receiver<Reply>, ConnError> {
        if let Some(e) = self.failed.borrow().as_ref() {
            return Err(e.clone());
        }
        debug_assert!(self.has_room(), "the pool sent on a full connection");
        debug_assert!(
            !self.pending.borrow().contains_key(&request_id),
            "request id reused while in flight"
        );
        self.sink.send(request_id, message)?;
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(request_id, Some(tx));
        Ok(rx)
    }

    /// The caller of `request_id` gives up: its answer, if it comes, is dropped, and
    /// its slot stays taken until then (the peer is still working on it).
    pub fn abandon(&self, request_id: u64) {
        if let Some(entry) = self.pending.borrow_mut().get_mut(&request_id) {
            *entry = None;
        }
    }

    /// Whether no frame at all arrived since `since`.
    pub fn silent_since(&self, since: Instant) -> bool {
        self.last_frame_at.get() < since
    }

    /// Closes the connection for `error` (the first error wins) and fails every request
    /// in flight with it.
    pub fn fail(&self, error: ConnError) {
        if self.failed.borrow().is_some() {
            return;
        }
        *self.failed.borrow_mut() = Some(error.clone());
        self.sink.abort(error.clone());
        let pending: Vec<_> = self.pending.borrow_mut().drain().collect();
        let failed_requests = pending.len();
        for (_, waiter) in pending {
            if let Some(tx) = waiter {
                let _ = tx.send(Err(error.clone()));
            }
        }
        if let Some(events) = self.events.upgrade() {
            events.closed(&error, failed_requests);
        }
    }

    /// Hands an answer frame to its caller.
    fn deliver(&self, frame: Frame) -> Result<(), ConnError> {
        self.last_frame_at.set(Instant::now());
        if frame.kind == FrameKind::Error && frame.request_id == 0 {
            // The peer closes this connection and says why.
            return Err(ConnError::Refused {
                peer: self.peer.clone(),
                message: error_frame_text(&frame),
            });
        }
        let waiter = self.pending.borrow_mut().remove(&frame.request_id);
        let events = self.events.upgrade();
        match waiter {
            Some(Some(tx)) => {
                let _ = tx.send(Ok(frame));
            }
            Some(None) => {
                if let Some(events) = &events {
                    events.late_reply();
                }
            }
            None => {
                return Err(ConnError::UnknownRequest {
                    peer: self.peer.clone(),
                    request_id: frame.request_id,
                })
            }
        }
        if let Some(events) = &events {
            events.slot_freed();
        }
        Ok(())
    }
}

/// The reader task: answers to their callers until the connection fails or closes.
async fn read_answers(conn: Rc<PipelinedConn>, mut reader: FrameReader) {
    while !conn.is_failed() {
        let delivered = match reader.read_frame().await {
            Ok(frame) => conn.deliver(frame),
            Err(e) => Err(e),
        };
        if let Err(e) = delivered {
            conn.fail(e);
        }
    }
}
