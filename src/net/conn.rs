//! A framed connection between two nodes over a glommio socket: reads and writes whole
//! `wire` frames, runs the handshake from either side, and splits into a reader and a
//! shared [`FrameSink`] so that several requests can be in flight on one connection.
//!
//! Bounds: the read buffer grows to one frame at most (`max-frame-bytes`, and
//! `HANDSHAKE_MAX_PAYLOAD_BYTES` until the peer has proven the shared secret). A
//! `FrameSink` buffers only the frames its users put in it; both users bound that by
//! `max-inflight-requests-per-connection` (see `pipeline` and `service`).
//!
//! **Invariant:** a frame goes into a `FrameSink` whole, in one synchronous call, and
//! one flusher task writes the buffer out in order: the bytes of two frames never
//! interleave on the socket, whichever tasks send them.

use crate::net::wire::{
    self, Challenge, DecodeMessage, EncodeMessage, ErrorMessage, Frame, FrameDecoder, FrameKind,
    Hello, Proof, Welcome, WireError,
};
use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use glommio::sync::StaticPermit;
use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// Errors of a node-to-node connection.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    #[error("I/O error talking to {peer}: {message}")]
    Io { peer: String, message: String },
    #[error("{peer} closed the connection")]
    Closed { peer: String },
    #[error("protocol error with {peer}: {source}")]
    Wire { peer: String, source: WireError },
    #[error("{peer} refused us: {message}")]
    Refused { peer: String, message: String },
    #[error("timed out after {after:?} talking to {peer}")]
    Timeout { peer: String, after: Duration },
    #[error(
        "{peer} answered request id {request_id}, which is not in flight on that connection; \
         closing it"
    )]
    UnknownRequest { peer: String, request_id: u64 },
}

/// What the handshake told the client about the server.
#[derive(Clone, Copy, Debug)]
pub struct PeerInfo {
    pub node_id: u64,
    pub cores: u16,
    pub protocol_version: u16,
    pub meta_version: u64,
}

/// A node-to-node socket: plain, or TLS (`[cluster] tls-enabled`) from either side.
pub enum NetStream {
    Plain(TcpStream),
    /// We accepted it.
    TlsServer(Box<futures_rustls::server::TlsStream<TcpStream>>),
    /// We dialled it.
    TlsClient(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl From<TcpStream> for NetStream {
    fn from(s: TcpStream) -> NetStream {
        NetStream::Plain(s)
    }
}

impl NetStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            NetStream::Plain(s) => s,
            NetStream::TlsServer(s) => s.get_ref().0,
            NetStream::TlsClient(s) => s.get_ref().0,
        }
    }

    fn poll_read(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self {
            NetStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NetStream::TlsServer(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            NetStream::TlsClient(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }

    fn poll_write(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self {
            NetStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NetStream::TlsServer(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            NetStream::TlsClient(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(&mut self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        match self {
            NetStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NetStream::TlsServer(s) => Pin::new(s.as_mut()).poll_flush(cx),
            NetStream::TlsClient(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
}

/// The socket both halves of a split connection use. glommio keeps separate readiness
/// sources for reading and writing, so a read pending in one task and a write pending in
/// another do not disturb each other (over TLS too: after the handshake, rustls reads
/// only when asked to read and writes only when asked to write or flush); the
/// `RefCell` is borrowed inside one poll only, never across an await.
#[derive(Clone)]
struct SharedStream(Rc<RefCell<NetStream>>);

impl SharedStream {
    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| self.0.borrow_mut().poll_read(cx, buf)).await
    }

    /// Writes all of `buf` and flushes it (TLS keeps records until flushed).
    async fn write_all(&self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            let n = std::future::poll_fn(|cx| self.0.borrow_mut().poll_write(cx, buf)).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        std::future::poll_fn(|cx| self.0.borrow_mut().poll_flush(cx)).await
    }

    /// Shuts both directions down now: a read or write pending on the socket ends, and
    /// the peer sees the close.
    fn shutdown(&self) {
        let fd = self.0.borrow().tcp().as_raw_fd();
        // SAFETY: shutdown(2) on a descriptor this socket owns; it does not close it.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}

/// The read half: whole frames off the socket.
pub struct FrameReader {
    stream: SharedStream,
    read_buf: BytesMut,
    decoder: FrameDecoder,
    peer: String,
}

/// The write half for one task at a time (the handshake); see [`FrameSink`] for many.
pub struct FrameWriter {
    stream: SharedStream,
    write_buf: BytesMut,
    peer: String,
}

/// One framed connection, before it is split.
pub struct FramedConn {
    reader: FrameReader,
    writer: FrameWriter,
}

use crate::limits::READ_CHUNK_BYTES;

fn io_error(peer: &str, e: impl std::fmt::Display) -> ConnError {
    ConnError::Io {
        peer: peer.to_string(),
        message: e.to_string(),
    }
}

fn wire_error(peer: &str, source: WireError) -> ConnError {
    ConnError::Wire {
        peer: peer.to_string(),
        source,
    }
}

impl FrameReader {
    pub fn peer(&self) -> &str {
        &self.peer
    }

    pub fn set_max_payload_bytes(&mut self, max: u32) {
        self.decoder.set_max_payload_bytes(max);
    }

    /// Reads the next whole frame.
    pub async fn read_frame(&mut self) -> Result<Frame, ConnError> {
        loop {
            match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => return Err(wire_error(&self.peer, e)),
            }
            let len = self.read_buf.len();
            self.read_buf.resize(len + READ_CHUNK_BYTES, 0);
            let n = match self.stream.read(&mut self.read_buf[len..]).await {
                Ok(n) => n,
                Err(e) => {
                    self.read_buf.truncate(len);
                    return Err(io_error(&self.peer, e));
                }
            };
            self.read_buf.truncate(len + n);
            if n == 0 {
                return Err(ConnError::Closed {
                    peer: self.peer.clone(),
                });
            }
        }
    }

    /// Reads the next frame as message `M`; an `Error` frame becomes `Refused`.
    pub async fn read_message<M: DecodeMessage>(&mut self) -> Result<(u64, M), ConnError> {
        let frame = self.read_frame().await?;
        let message = decode_reply::<M>(&self.peer, &frame)?;
        Ok((frame.request_id, message))
    }
}

/// Decodes `frame` as message `M`; an `Error` frame becomes `Refused`, a frame of another
/// type or a malformed payload a `Wire` error.
pub fn decode_reply<M: DecodeMessage>(peer: &str, frame: &Frame) -> Result<M, ConnError> {
    if frame.kind == FrameKind::Error && M::KIND != FrameKind::Error {
        return Err(ConnError::Refused {
            peer: peer.to_string(),
            message: error_frame_text(frame),
        });
    }
    frame.decode_message::<M>().map_err(|e| wire_error(peer, e))
}

/// The message of an `Error` frame (or why it could not be read).
pub fn error_frame_text(frame: &Frame) -> String {
    frame
        .decode_message::<ErrorMessage>()
        .map(|e| e.message)
        .unwrap_or_else(|e| e.to_string())
}

impl FrameWriter {
    /// Encodes and sends one message.
    pub async fn send<M: EncodeMessage>(
        &mut self,
        request_id: u64,
        message: &M,
    ) -> Result<(), ConnError> {
        self.write_buf.clear();
        wire::encode_message(request_id, message, &mut self.write_buf)
            .map_err(|e| wire_error(&self.peer, e))?;
        self.stream
            .write_all(&self.write_buf)
            .await
            .map_err(|e| io_error(&self.peer, e))
    }
}

impl FramedConn {
    pub fn new(stream: impl Into<NetStream>, max_payload_bytes: u32) -> FramedConn {
        let stream = stream.into();
        let peer = stream
            .tcp()
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "peer".into());
        let _ = stream.tcp().set_nodelay(true);
        let stream = SharedStream(Rc::new(RefCell::new(stream)));
        FramedConn {
            reader: FrameReader {
                stream: stream.clone(),
                read_buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
                decoder: FrameDecoder::new(max_payload_bytes),
                peer: peer.clone(),
            },
            writer: FrameWriter {
                stream,
                write_buf: BytesMut::new(),
                peer,
            },
        }
    }

    pub fn peer(&self) -> &str {
        &self.reader.peer
    }

    pub fn set_max_payload_bytes(&mut self, max: u32) {
        self.reader.set_max_payload_bytes(max);
    }

    fn wire(&self, source: WireError) -> ConnError {
        wire_error(self.peer(), source)
    }

    /// Reads the next whole frame.
    pub async fn read_frame(&mut self) -> Result<Frame, ConnError> {
        self.reader.read_frame().await
    }

    /// Reads the next frame as message `M`; an `Error` frame becomes `Refused`.
    pub async fn read_message<M: DecodeMessage>(&mut self) -> Result<(u64, M), ConnError> {
        self.reader.read_message().await
    }

    /// Encodes and sends one message.
    pub async fn send<M: EncodeMessage>(
        &mut self,
        request_id: u64,
        message: &M,
    ) -> Result<(), ConnError> {
        self.writer.send(request_id, message).await
    }

    /// Writes raw bytes (tests: a corrupt or foreign frame).
    #[cfg(test)]
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.writer
            .stream
            .write_all(bytes)
            .await
            .map_err(|e| io_error(&self.writer.peer, e))
    }

    /// Tells the peer why we close, best effort.
    pub async fn send_error(&mut self, error: &WireError) {
        let _ = self.send(0, &ErrorMessage::from_wire_error(error)).await;
    }

    /// Splits the connection into its read half and a [`FrameSink`] many tasks can send
    /// on, plus the sink's flusher, which the caller spawns. The socket closes when the
    /// reader, the sink's clones and the flusher are all gone.
    pub fn into_split(
        self,
    ) -> (
        FrameReader,
        FrameSink,
        impl std::future::Future<Output = Result<(), ConnError>>,
    ) {
        let (sink, flusher) = FrameSink::new(self.writer);
        (self.reader, sink, flusher)
    }

    /// Client side: Hello -> Challenge -> Proof -> Welcome.
    pub async fn handshake_client(
        &mut self,
        node_id: u64,
        cores: u16,
        secret: &[u8],
    ) -> Result<PeerInfo, ConnError> {
        self.send(
            0,
            &Hello {
                protocol_version: wire::PROTOCOL_VERSION,
                node_id,
                cores,
            },
        )
        .await?;
        let (_, challenge) = self.read_message::<Challenge>().await?;
        let version = wire::accept_version(
            wire::MIN_PROTOCOL_VERSION,
            wire::PROTOCOL_VERSION,
            challenge.protocol_version,
        )
        .map_err(|e| self.wire(e))?;
        let hmac = wire::compute_proof(secret, &challenge.nonce, node_id);
        self.send(0, &Proof { hmac }).await?;
        let (_, welcome) = self.read_message::<Welcome>().await?;
        Ok(PeerInfo {
            node_id: challenge.node_id,
            cores: challenge.cores,
            protocol_version: version,
            meta_version: welcome.meta_version,
        })
    }

    /// Server side: checks the client's proof, then that its node id is one of this
    /// node's peers (`is_peer`; checked after the proof, so a client without the secret
    /// learns nothing about which ids exist); returns the client's node id.
    pub async fn handshake_server(
        &mut self,
        node_id: u64,
        cores: u16,
        secret: &[u8],
        meta_version: u64,
        is_peer: impl Fn(u64) -> bool,
    ) -> Result<u64, ConnError> {
        let (_, hello) = self.read_message::<Hello>().await?;
        let version = match wire::negotiate(
            wire::MIN_PROTOCOL_VERSION,
            wire::PROTOCOL_VERSION,
            hello.protocol_version,
        ) {
            Ok(v) => v,
            Err(e) => {
                self.send_error(&e).await;
                return Err(self.wire(e));
            }
        };
        let nonce = random_nonce();
        self.send(
            0,
            &Challenge {
                protocol_version: version,
                node_id,
                cores,
                nonce,
            },
        )
        .await?;
        let (_, proof) = self.read_message::<Proof>().await?;
        if let Err(e) = wire::verify_proof(secret, &nonce, hello.node_id, &proof.hmac) {
            self.send_error(&e).await;
            return Err(self.wire(e));
        }
        if !is_peer(hello.node_id) {
            let e = WireError::UnknownNode {
                node: hello.node_id,
            };
            self.send_error(&e).await;
            return Err(self.wire(e));
        }
        self.send(0, &Welcome { meta_version }).await?;
        Ok(hello.node_id)
    }
}

/// The write half of a split connection, shared by every task that sends on it.
/// [`FrameSink::send`] appends one whole frame to a buffer, synchronously; the flusher
/// task writes everything buffered with one `write_all`, in order, while new frames
/// gather in a second buffer, so many small frames cost one syscall.
///
/// Bound: the sink holds only what its users put in it. The pipelined client puts at
/// most `max-inflight-requests-per-connection` requests; the service at most that many
/// replies, because a reply's permit is released only after its bytes were written
/// (`send_releasing`), so a peer that stops reading makes the service stop reading.
#[derive(Clone)]
pub struct FrameSink {
    state: Rc<RefCell<SinkState>>,
}

struct SinkState {
    stream: SharedStream,
    peer: String,
    queued: BytesMut,
    /// Released once the frames queued before them are written.
    release_after_write: Vec<StaticPermit>,
    flusher: Option<Waker>,
    /// No more frames are accepted; the flusher writes what is queued, then ends.
    closing: bool,
    /// Why the sink stopped: a write error, or `abort`.
    failed: Option<ConnError>,
}

use crate::limits::SPARE_BUFFER_MAX_BYTES;

impl FrameSink {
    fn new(
        writer: FrameWriter,
    ) -> (
        FrameSink,
        impl std::future::Future<Output = Result<(), ConnError>>,
    ) {
        let mut queued = writer.write_buf;
        queued.clear();
        let state = Rc::new(RefCell::new(SinkState {
            stream: writer.stream,
            peer: writer.peer,
            queued,
            release_after_write: Vec::new(),
            flusher: None,
            closing: false,
            failed: None,
        }));
        (
            FrameSink {
                state: state.clone(),
            },
            flush_loop(state),
        )
    }

    pub fn peer(&self) -> String {
        self.state.borrow().peer.clone()
    }

    /// Queues one frame; fails at once if the sink is closing or broken, or if the
    /// message cannot be framed (nothing is queued then).
    pub fn send<M: EncodeMessage>(&self, request_id: u64, message: &M) -> Result<(), ConnError> {
        self.send_releasing(request_id, message, None)
    }

    /// As `send`, and releases `permit` once the frame's bytes are written (or the sink
    /// fails, or at once if the frame is not queued).
    pub fn send_releasing<M: EncodeMessage>(
        &self,
        request_id: u64,
        message: &M,
        permit: Option<StaticPermit>,
    ) -> Result<(), ConnError> {
        let mut s = self.state.borrow_mut();
        if let Some(e) = &s.failed {
            return Err(e.clone());
        }
        if s.closing {
            return Err(ConnError::Closed {
                peer: s.peer.clone(),
            });
        }
        if let Err(e) = wire::encode_message(request_id, message, &mut s.queued) {
            return Err(wire_error(&s.peer, e));
        }
        s.release_after_write.extend(permit);
        if let Some(flusher) = s.flusher.take() {
            flusher.wake();
        }
        Ok(())
    }

    /// Accepts no more frames; the flusher writes what is queued, shuts the socket down
    /// and ends.
    pub fn close(&self) {
        let mut s = self.state.borrow_mut();
        s.closing = true;
        if let Some(flusher) = s.flusher.take() {
            flusher.wake();
        }
    }

    /// Stops now: drops what is queued, shuts the socket down in both directions (a read
    /// pending on the reader ends too) and fails every later `send` with `error`.
    pub fn abort(&self, error: ConnError) {
        let mut s = self.state.borrow_mut();
        if s.failed.is_none() {
            s.failed = Some(error);
        }
        s.closing = true;
        s.queued.clear();
        s.release_after_write.clear();
        s.stream.shutdown();
        if let Some(flusher) = s.flusher.take() {
            flusher.wake();
        }
    }
}

/// The flusher of a [`FrameSink`]: writes the queued frames in order until the sink is
/// closed and empty (`Ok`) or broken (`Err`, after aborting the sink).
async fn flush_loop(state: Rc<RefCell<SinkState>>) -> Result<(), ConnError> {
    let (stream, peer) = {
        let s = state.borrow();
        (s.stream.clone(), s.peer.clone())
    };
    let mut spare = BytesMut::new();
    loop {
        let next = std::future::poll_fn(|cx| {
            let mut s = state.borrow_mut();
            if let Some(e) = &s.failed {
                return Poll::Ready(Err(e.clone()));
            }
            if !s.queued.is_empty() {
                let buf = std::mem::replace(&mut s.queued, std::mem::take(&mut spare));
                let permits = std::mem::take(&mut s.release_after_write);
                return Poll::Ready(Ok(Some((buf, permits))));
            }
            if s.closing {
                return Poll::Ready(Ok(None));
            }
            s.flusher = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        let Some((mut buf, permits)) = next else {
            // Closed and written out: the peer sees the end now, not when the last
            // task holding this sink is done.
            stream.shutdown();
            return Ok(());
        };
        if let Err(e) = stream.write_all(&buf).await {
            let error = io_error(&peer, e);
            FrameSink {
                state: state.clone(),
            }
            .abort(error.clone());
            return Err(state.borrow().failed.clone().unwrap_or(error));
        }
        drop(permits);
        buf.clear();
        spare = if buf.capacity() > SPARE_BUFFER_MAX_BYTES {
            BytesMut::new()
        } else {
            buf
        };
    }
}

/// 32 bytes from the kernel's CSPRNG.
fn random_nonce() -> [u8; wire::NONCE_BYTES] {
    let mut nonce = [0u8; wire::NONCE_BYTES];
    let mut filled = 0;
    while filled < nonce.len() {
        // SAFETY: getrandom writes at most the given length into the buffer.
        let n = unsafe {
            libc::getrandom(nonce[filled..].as_mut_ptr().cast(), nonce.len() - filled, 0)
        };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No entropy source at all: fall back to time and address noise rather than
            // refuse every peer. The secret, not the nonce, carries the security.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            for (i, b) in nonce.iter_mut().enumerate() {
                *b = (t >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
            }
            break;
        }
    }
    nonce
}
