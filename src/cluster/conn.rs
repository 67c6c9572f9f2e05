//! A framed connection between two nodes over a glommio socket: reads and writes whole
//! `wire` frames, and runs the handshake from either side.
//!
//! Bounds: the read buffer grows to one frame at most (`max-frame-bytes`, and
//! `HANDSHAKE_MAX_PAYLOAD_BYTES` until the peer has proven the shared secret).

use crate::cluster::wire::{
    self, Challenge, DecodeMessage, EncodeMessage, ErrorMessage, Frame, FrameDecoder, FrameKind,
    Hello, Proof, Welcome, WireError,
};
use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
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
}

/// What the handshake told the client about the server.
#[derive(Clone, Copy, Debug)]
pub struct PeerInfo {
    pub node_id: u64,
    pub cores: u16,
    pub protocol_version: u16,
    pub meta_version: u64,
}

/// One framed connection.
pub struct FramedConn {
    stream: TcpStream,
    read_buf: BytesMut,
    decoder: FrameDecoder,
    write_buf: BytesMut,
    peer: String,
}

const READ_CHUNK_BYTES: usize = 64 * 1024;

impl FramedConn {
    pub fn new(stream: TcpStream, max_payload_bytes: u32) -> FramedConn {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "peer".into());
        let _ = stream.set_nodelay(true);
        FramedConn {
            stream,
            read_buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            decoder: FrameDecoder::new(max_payload_bytes),
            write_buf: BytesMut::new(),
            peer,
        }
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    pub fn set_max_payload_bytes(&mut self, max: u32) {
        self.decoder.set_max_payload_bytes(max);
    }

    fn io(&self, e: impl std::fmt::Display) -> ConnError {
        ConnError::Io {
            peer: self.peer.clone(),
            message: e.to_string(),
        }
    }

    fn wire(&self, source: WireError) -> ConnError {
        ConnError::Wire {
            peer: self.peer.clone(),
            source,
        }
    }

    /// Reads the next whole frame.
    pub async fn read_frame(&mut self) -> Result<Frame, ConnError> {
        loop {
            match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => return Err(self.wire(e)),
            }
            let len = self.read_buf.len();
            self.read_buf.resize(len + READ_CHUNK_BYTES, 0);
            let n = match self.stream.read(&mut self.read_buf[len..]).await {
                Ok(n) => n,
                Err(e) => {
                    self.read_buf.truncate(len);
                    return Err(self.io(e));
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
        if frame.kind == FrameKind::Error && M::KIND != FrameKind::Error {
            let message = frame
                .decode_message::<ErrorMessage>()
                .map(|e| e.message)
                .unwrap_or_else(|e| e.to_string());
            return Err(ConnError::Refused {
                peer: self.peer.clone(),
                message,
            });
        }
        let message = frame.decode_message::<M>().map_err(|e| self.wire(e))?;
        Ok((frame.request_id, message))
    }

    /// Encodes and sends one message.
    pub async fn send<M: EncodeMessage>(
        &mut self,
        request_id: u64,
        message: &M,
    ) -> Result<(), ConnError> {
        self.write_buf.clear();
        wire::encode_message(request_id, message, &mut self.write_buf).map_err(|e| self.wire(e))?;
        let buf = std::mem::take(&mut self.write_buf);
        let result = self.stream.write_all(&buf).await;
        self.write_buf = buf;
        result.map_err(|e| self.io(e))
    }

    /// Tells the peer why we close, best effort.
    pub async fn send_error(&mut self, error: &WireError) {
        let _ = self.send(0, &ErrorMessage::from_wire_error(error)).await;
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

    /// Server side: checks the client's proof; returns the client's node id.
    pub async fn handshake_server(
        &mut self,
        node_id: u64,
        cores: u16,
        secret: &[u8],
        meta_version: u64,
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
        self.send(0, &Welcome { meta_version }).await?;
        Ok(hello.node_id)
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
