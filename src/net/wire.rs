//! The node-to-node wire protocol (DESIGN section 4): frames, the handshake, and the
//! payload of every message.
//!
//! This module owns the mapping bytes <-> messages and nothing else. It never touches a
//! socket, a runtime or a clock: the cluster service and the ShardWriter drive it, and
//! tests and fuzz targets call it directly. **API boundary:** nothing else in the crate
//! reads or writes cluster frame bytes.
//!
//! # Frame
//!
//! Every frame is an 18-byte header and a payload. All integers are big-endian.
//!
//! | offset | bytes    | field      | meaning                                               |
//! |-------:|---------:|------------|-------------------------------------------------------|
//! | 0      | 1        | type       | [`FrameKind`]; an unknown value is an error           |
//! | 1      | 1        | flags      | no bits defined in version 1: senders write 0, the decoder carries the byte through |
//! | 2      | 8        | request id | a response carries its request's id (pipelining)     |
//! | 10     | 4        | length     | payload bytes, at most the receiver's `max_payload_bytes` |
//! | 14     | 4        | crc32c     | Castagnoli CRC of the payload (the header is not covered) |
//! | 18     | length   | payload    | the message, laid out below                           |
//!
//! | type | value  | direction          | payload                                            |
//! |------|-------:|--------------------|----------------------------------------------------|
//! | Hello              | `0x01` | client -> server | `protocol_version u16, node_id u64, cores u16` |
//! | Challenge          | `0x02` | server -> client | `protocol_version u16, node_id u64, cores u16, nonce [32]` |
//! | Proof              | `0x03` | client -> server | `hmac [32]`                                  |
//! | Welcome            | `0x04` | server -> client | `meta_version u64`                           |
//! | Ping               | `0x10` | request          | empty                                        |
//! | Pong               | `0x11` | response         | `node_id u64, cores u16, meta_version u64`   |
//! | WriteShard         | `0x20` | request          | `shard_id u64, database str, retention_policy str, group_start_ns i64, group_end_ns i64, precision u8, default_time_ns i64, lines bytes` |
//! | WriteShardResponse | `0x21` | response         | `status u8` (0 ok, 1 retryable, 2 permanent), then `points_written u32` (ok) or `message str` |
//! | MetaSync           | `0x30` | request          | owned by the meta module; opaque here        |
//! | MetaSyncResponse   | `0x31` | response         | owned by the meta module; opaque here        |
//! | MapShard           | `0x40` | request          | owned by `cluster::map_wire`: a scan or schema request (JSON) |
//! | MapShardResponse   | `0x41` | response         | owned by `cluster::map_wire`: shard results, one page (JSON) |
//! | Admin              | `0x50` | request          | owned by `cluster::admin`: SHOW QUERIES, KILL QUERY, DROP SHARD (JSON) |
//! | AdminResponse      | `0x51` | response         | owned by `cluster::admin`: the node's answer (JSON) |
//! | Error              | `0x7f` | either way       | `code u16, message str`                      |
//!
//! `str` is a `u32` length and that many UTF-8 bytes; `bytes` is a `u32` length and that
//! many bytes. A payload with bytes left after its last field is malformed.
//!
//! # Handshake
//!
//! ```text
//! client                                          server
//!   Hello { highest version, node id, cores }  ->
//!                                              <-  Challenge { agreed version, node id, cores, nonce }
//!   Proof { HMAC-SHA256(secret, "shardcore-cluster-v1" || nonce || client node id BE) } ->
//!                                              <-  Welcome { meta version }   or   Error + close
//! ```
//!
//! The server picks the version with [`negotiate`], the client checks the choice with
//! [`accept_version`]. The nonce is 32 fresh random bytes per connection (the service's
//! job); binding the client's node id into the proof stops a proof being replayed under
//! another identity. Handshake frames use request id 0. Until `Welcome`, a connection's
//! decoder should use [`HANDSHAKE_MAX_PAYLOAD_BYTES`], so an unauthenticated peer cannot
//! make the node buffer a large frame.
//!
//! # Back of the envelope
//!
//! - Header: 18 bytes. WriteShard adds 45 bytes plus the database and RP names, so on a
//!   5000-line shard batch (~1.8 MB of line protocol, ~360 bytes a line) framing is
//!   < 0.01 % of the bytes.
//! - crc32c runs at > 10 GB/s with SSE4.2: ~0.2 ms for that batch, the same order as the
//!   single copy into the send buffer. On 1 GbE the batch spends ~15 ms on the wire, so
//!   the codec is never the bottleneck of a remote write.
//! - `DEFAULT_MAX_PAYLOAD_BYTES` (64 MiB) holds ~35 such batches; a larger shard batch is
//!   split by the sender, never sent to be rejected.
//!
//! # Invariants
//!
//! - **Invariant:** the decoder never panics, whatever the bytes. A malformed frame is a
//!   typed [`WireError`]; closing that one connection (and counting it) is the caller's
//!   job, and the decoder keeps answering the same error if called again.
//! - **Invariant:** a partial frame allocates nothing: [`FrameDecoder::decode`] looks at
//!   the buffered bytes and returns `Ok(None)` until the whole frame is there. A length
//!   over the bound is rejected as soon as the header arrives, before its payload is
//!   buffered.
//! - **Invariant:** a decoded payload, and the `lines` of a decoded [`WriteShard`], are
//!   slices of the read buffer (`Bytes`), never copies. They pin that buffer until
//!   dropped; the reader reserves a fresh one meanwhile.
//! - **Invariant:** encoding copies each payload byte once, into the output buffer, which
//!   is reserved once at the exact frame size.

use crate::lineproto::Precision;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The highest protocol version this node speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The lowest protocol version this node still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// Bytes of the frame header: type, flags, request id, length, crc32c.
pub const FRAME_HEADER_BYTES: usize = 18;
/// The default bound on one frame's payload once a connection is authenticated.
pub const DEFAULT_MAX_PAYLOAD_BYTES: u32 = crate::limits::FRAME_MAX_PAYLOAD_BYTES;
/// The bound on one frame's payload before the handshake completes.
pub const HANDSHAKE_MAX_PAYLOAD_BYTES: u32 = crate::limits::HANDSHAKE_MAX_PAYLOAD_BYTES;
/// Bytes of the server's handshake nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of the HMAC-SHA256 handshake proof.
pub const PROOF_BYTES: usize = 32;
/// Domain separation for the handshake proof: a MAC made for anything else never
/// verifies here.
pub const PROOF_CONTEXT: &[u8] = b"shardcore-cluster-v1";

/// Errors of encoding and decoding cluster frames. Every decode error means the peer sent
/// bytes this node cannot trust: close that connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error(
        "unknown cluster frame type {kind:#04x}: the peer is not a ShardCore node of a \
         compatible version, or the stream lost its framing"
    )]
    UnknownFrameType { kind: u8 },
    #[error(
        "cluster frame payload of {len} bytes exceeds the limit of {max} bytes: split the \
         shard batch, or raise max_payload_bytes on the receiver"
    )]
    FrameTooLarge { len: u64, max: u64 },
    #[error(
        "cluster frame checksum mismatch (header says crc32c {expected:#010x}, payload has \
         {actual:#010x}): corrupted in transit or a peer bug"
    )]
    BadCrc { expected: u32, actual: u32 },
    #[error("truncated cluster message: the payload ends before {what}")]
    Truncated { what: &'static str },
    #[error(
        "peer speaks cluster protocol version {theirs}, this node speaks {ours_min} to \
         {ours_max}: upgrade the older node"
    )]
    UnsupportedVersion {
        theirs: u16,
        ours_min: u16,
        ours_max: u16,
    },
    #[error(
        "peer failed the cluster handshake: its proof does not match; check that \
         shared-secret is the same on every node"
    )]
    BadProof,
    #[error(
        "node id {node} is not a configured peer of this node: list it in [cluster] peers \
         on every node, or fix node-id on the node that dialled"
    )]
    UnknownNode { node: u64 },
    #[error("expected a {expected:?} frame, the peer sent {actual:?}")]
    UnexpectedFrame {
        expected: FrameKind,
        actual: FrameKind,
    },
    #[error("malformed cluster message: {what}")]
    Malformed { what: &'static str },
}

impl WireError {
    /// The code an [`ErrorMessage`] carries for this error, sent before closing.
    pub fn error_code(&self) -> u16 {
        match self {
            WireError::UnsupportedVersion { .. } => ErrorMessage::UNSUPPORTED_VERSION,
            WireError::BadProof => ErrorMessage::BAD_PROOF,
            WireError::UnknownNode { .. } => ErrorMessage::UNKNOWN_NODE,
            WireError::UnexpectedFrame { .. } => ErrorMessage::UNEXPECTED_FRAME,
            _ => ErrorMessage::MALFORMED_FRAME,
        }
    }
}

/// Codecs of a message whose payload is opaque bytes owned by another module (JSON
/// for meta sync and the query path): `opaque_message!(Type, FrameKind::X, field)`.
macro_rules! opaque_message {
    ($ty:ident, $kind:expr, $field:ident) => {
        impl $crate::net::wire::EncodeMessage for $ty {
            const KIND: $crate::net::wire::FrameKind = $kind;
            fn payload_len(&self) -> usize {
                self.$field.len()
            }
            fn encode_payload(&self, out: &mut bytes::BytesMut) {
                out.extend_from_slice(&self.$field);
            }
        }
        impl $crate::net::wire::DecodeMessage for $ty {
            fn decode_payload(
                payload: &bytes::Bytes,
            ) -> Result<Self, $crate::net::wire::WireError> {
                Ok($ty {
                    $field: payload.clone(),
                })
            }
        }
    };
}
pub(crate) use opaque_message;

/// The type byte of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    Hello = 0x01,
    Challenge = 0x02,
    Proof = 0x03,
    Welcome = 0x04,
    Ping = 0x10,
    Pong = 0x11,
    WriteShard = 0x20,
    WriteShardResponse = 0x21,
    MetaSync = 0x30,
    MetaSyncResponse = 0x31,
    /// The query path: a scan or schema request for the peer's shards (`cluster::map_wire`).
    MapShard = 0x40,
    MapShardResponse = 0x41,
    /// SHOW QUERIES, KILL QUERY, DROP SHARD on a peer (`cluster::admin`).
    Admin = 0x50,
    AdminResponse = 0x51,
    Error = 0x7f,
}

impl FrameKind {
    /// Every frame type, in wire-value order.
    pub const ALL: [FrameKind; 15] = [
        FrameKind::Hello,
        FrameKind::Challenge,
        FrameKind::Proof,
        FrameKind::Welcome,
        FrameKind::Ping,
        FrameKind::Pong,
        FrameKind::WriteShard,
        FrameKind::WriteShardResponse,
        FrameKind::MetaSync,
        FrameKind::MetaSyncResponse,
        FrameKind::MapShard,
        FrameKind::MapShardResponse,
        FrameKind::Admin,
        FrameKind::AdminResponse,
        FrameKind::Error,
    ];

    /// Whether the frame belongs to the handshake (allowed before `Welcome`).
    pub fn is_handshake(self) -> bool {
        matches!(
            self,
            FrameKind::Hello | FrameKind::Challenge | FrameKind::Proof | FrameKind::Welcome
        )
    }
}

impl From<FrameKind> for u8 {
    fn from(kind: FrameKind) -> u8 {
        kind as u8
    }
}

impl TryFrom<u8> for FrameKind {
    type Error = WireError;

    fn try_from(value: u8) -> Result<FrameKind, WireError> {
        FrameKind::ALL
            .into_iter()
            .find(|kind| *kind as u8 == value)
            .ok_or(WireError::UnknownFrameType { kind: value })
    }
}

/// The fixed 18 bytes in front of every payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub flags: u8,
    pub request_id: u64,
    pub payload_len: u32,
    pub payload_crc32c: u32,
}

impl FrameHeader {
    /// Reads a header; only the type byte can be invalid.
    pub fn parse(bytes: &[u8; FRAME_HEADER_BYTES]) -> Result<FrameHeader, WireError> {
        let mut rest = &bytes[..];
        let kind = FrameKind::try_from(rest.get_u8())?;
        Ok(FrameHeader {
            kind,
            flags: rest.get_u8(),
            request_id: rest.get_u64(),
            payload_len: rest.get_u32(),
            payload_crc32c: rest.get_u32(),
        })
    }

    /// Appends the 18 header bytes.
    pub fn write(&self, out: &mut BytesMut) {
        out.put_u8(self.kind.into());
        out.put_u8(self.flags);
        out.put_u64(self.request_id);
        out.put_u32(self.payload_len);
        out.put_u32(self.payload_crc32c);
    }

    /// Header plus payload bytes.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_BYTES + self.payload_len as usize
    }
}

/// One decoded frame. `payload` is a slice of the read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub flags: u8,
    pub request_id: u64,
    pub payload: Bytes,
}

impl Frame {
    /// A frame with no flags set.
    pub fn new(kind: FrameKind, request_id: u64, payload: Bytes) -> Frame {
        Frame {
            kind,
            flags: 0,
            request_id,
            payload,
        }
    }

    /// Decodes the payload as message `M`, after checking the frame is of `M`'s type.
    pub fn decode_message<M: DecodeMessage>(&self) -> Result<M, WireError> {
        if self.kind != M::KIND {
            return Err(WireError::UnexpectedFrame {
                expected: M::KIND,
                actual: self.kind,
            });
        }
        M::decode_payload(&self.payload)
    }
}

/// Appends `frame` to `out`: one copy of the payload, one crc pass over it.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) -> Result<(), WireError> {
    let open = OpenFrame::begin(
        frame.kind,
        frame.flags,
        frame.request_id,
        frame.payload.len(),
        out,
    )?;
    out.extend_from_slice(&frame.payload);
    open.finish(out);
    Ok(())
}

/// Appends message `message` as one frame (no flags) to `out`, reserving the exact frame
/// size first so the buffer grows at most once.
pub fn encode_message<M: EncodeMessage>(
    request_id: u64,
    message: &M,
    out: &mut BytesMut,
) -> Result<(), WireError> {
    let open = OpenFrame::begin(M::KIND, 0, request_id, message.payload_len(), out)?;
    message.encode_payload(out);
    open.finish(out);
    Ok(())
}

/// A frame whose header is written and whose payload is being appended.
struct OpenFrame {
    header_at: usize,
    payload_len: usize,
}

impl OpenFrame {
    /// Reserves the whole frame and writes its header with the crc still zero.
    fn begin(
        kind: FrameKind,
        flags: u8,
        request_id: u64,
        payload_len: usize,
        out: &mut BytesMut,
    ) -> Result<OpenFrame, WireError> {
        let wire_len = u32::try_from(payload_len).map_err(|_| WireError::FrameTooLarge {
            len: payload_len as u64,
            max: u64::from(u32::MAX),
        })?;
        out.reserve(FRAME_HEADER_BYTES + payload_len);
        let header_at = out.len();
        let header = FrameHeader {
            kind,
            flags,
            request_id,
            payload_len: wire_len,
            payload_crc32c: 0,
        };
        header.write(out);
        Ok(OpenFrame {
            header_at,
            payload_len,
        })
    }

    /// Fills in the crc of the payload appended since `begin`.
    fn finish(self, out: &mut BytesMut) {
        let payload_at = self.header_at + FRAME_HEADER_BYTES;
        debug_assert_eq!(
            out.len() - payload_at,
            self.payload_len,
            "payload_len() must match what encode_payload() writes"
        );
        let crc = crc32c::crc32c(&out[payload_at..]);
        out[payload_at - 4..payload_at].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Splits whole frames off a connection's read buffer.
///
/// Stateless between calls: everything it knows is in the buffer, so it can be asked
/// again after every read.
#[derive(Clone, Copy, Debug)]
pub struct FrameDecoder {
    max_payload_bytes: u32,
}

impl Default for FrameDecoder {
    fn default() -> FrameDecoder {
        FrameDecoder::new(DEFAULT_MAX_PAYLOAD_BYTES)
    }
}

impl FrameDecoder {
    pub fn new(max_payload_bytes: u32) -> FrameDecoder {
        FrameDecoder { max_payload_bytes }
    }

    pub fn max_payload_bytes(&self) -> u32 {
        self.max_payload_bytes
    }

    /// Changes the bound, e.g. from the handshake bound to the full one after `Welcome`.
    pub fn set_max_payload_bytes(&mut self, max_payload_bytes: u32) {
        self.max_payload_bytes = max_payload_bytes;
    }

    /// Takes the next whole frame off the front of `buffer`.
    ///
    /// `Ok(None)`: more bytes are needed; `buffer` is untouched and nothing was allocated.
    /// `Err`: the stream is bad; `buffer` is untouched and the connection should close.
    pub fn decode(&self, buffer: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some(header) = self.buffered_header(buffer)? else {
            return Ok(None);
        };
        let frame_len = header.frame_len();
        let Some(payload) = buffer.get(FRAME_HEADER_BYTES..frame_len) else {
            return Ok(None);
        };
        verify_payload_crc(header.payload_crc32c, payload)?;
        let mut frame = buffer.split_to(frame_len).freeze();
        frame.advance(FRAME_HEADER_BYTES);
        Ok(Some(Frame {
            kind: header.kind,
            flags: header.flags,
            request_id: header.request_id,
            payload: frame,
        }))
    }

    /// The header at the front of `buffer`, once its 18 bytes are there, checked against
    /// the bound before any of its payload is waited for.
    fn buffered_header(&self, buffer: &[u8]) -> Result<Option<FrameHeader>, WireError> {
        let Some(bytes) = buffer.first_chunk::<FRAME_HEADER_BYTES>() else {
            return Ok(None);
        };
        let header = FrameHeader::parse(bytes)?;
        if header.payload_len > self.max_payload_bytes {
            return Err(WireError::FrameTooLarge {
                len: u64::from(header.payload_len),
                max: u64::from(self.max_payload_bytes),
            });
        }
        Ok(Some(header))
    }
}

fn verify_payload_crc(expected: u32, payload: &[u8]) -> Result<(), WireError> {
    let actual = crc32c::crc32c(payload);
    if actual == expected {
        Ok(())
    } else {
        Err(WireError::BadCrc { expected, actual })
    }
}

/// A message that can be written as a frame payload.
pub trait EncodeMessage {
    /// The frame type that carries this message.
    const KIND: FrameKind;
    /// Exact bytes [`EncodeMessage::encode_payload`] writes, so the frame is reserved once.
    fn payload_len(&self) -> usize;
    /// Appends the payload (no header) to `out`.
    fn encode_payload(&self, out: &mut BytesMut);

    /// Header plus payload bytes: what a sender checks against the peer's bound.
    fn frame_len(&self) -> usize {
        FRAME_HEADER_BYTES + self.payload_len()
    }
}

/// A message that can be read back from a frame payload.
pub trait DecodeMessage: EncodeMessage + Sized {
    /// Reads the whole payload; a short payload is `Truncated`, extra bytes `Malformed`.
    fn decode_payload(payload: &Bytes) -> Result<Self, WireError>;
}

/// Reads the fields of one payload in order, checking each length before taking it.
struct PayloadReader {
    rest: Bytes,
}

impl PayloadReader {
    fn new(payload: &Bytes) -> PayloadReader {
        PayloadReader {
            rest: payload.clone(),
        }
    }

    fn need(&self, len: usize, what: &'static str) -> Result<(), WireError> {
        if self.rest.len() < len {
            return Err(WireError::Truncated { what });
        }
        Ok(())
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        self.need(1, what)?;
        Ok(self.rest.get_u8())
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        self.need(2, what)?;
        Ok(self.rest.get_u16())
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        self.need(4, what)?;
        Ok(self.rest.get_u32())
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        self.need(8, what)?;
        Ok(self.rest.get_u64())
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, WireError> {
        self.need(8, what)?;
        Ok(self.rest.get_i64())
    }

    fn array32(&mut self, what: &'static str) -> Result<[u8; 32], WireError> {
        self.need(32, what)?;
        let mut array = [0u8; 32];
        self.rest.copy_to_slice(&mut array);
        Ok(array)
    }

    /// A `u32`-length-prefixed run of bytes, as a slice of the payload (no copy).
    fn bytes(&mut self, what: &'static str) -> Result<Bytes, WireError> {
        let len = self.u32(what)? as usize;
        self.need(len, what)?;
        Ok(self.rest.split_to(len))
    }

    fn string(&mut self, what: &'static str, not_utf8: &'static str) -> Result<String, WireError> {
        let bytes = self.bytes(what)?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(WireError::Malformed { what: not_utf8 }),
        }
    }

    /// Checks the payload held nothing after its last field.
    fn finish(self, trailing: &'static str) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed { what: trailing })
        }
    }
}

/// Bytes of a `u32`-length-prefixed field.
fn prefixed_len(bytes: &[u8]) -> usize {
    4 + bytes.len()
}

/// Appends a `u32`-length-prefixed field. A field over 4 GiB makes the payload over
/// 4 GiB, which `OpenFrame::begin` refuses before anything is written, so the prefix
/// never wraps in a frame that is sent.
fn put_prefixed(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(bytes);
}

/// The first frame of a connection: the client says who it is and its highest version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub protocol_version: u16,
    pub node_id: u64,
    pub cores: u16,
}

impl EncodeMessage for Hello {
    const KIND: FrameKind = FrameKind::Hello;

    fn payload_len(&self) -> usize {
        12
    }

    fn encode_payload(&self, out: &mut BytesMut) {
        out.put_u16(self.protocol_version);
        out.put_u64(self.node_id);
        out.put_u16(self.cores);
    }
}

impl DecodeMessage for Hello {
    fn decode_payload(payload: &Bytes) -> Result<Hello, WireError> {
        let mut reader = PayloadReader::new(payload);
        let hello = Hello {
            protocol_version: reader.u16("Hello.protocol_version")?,
            node_id: reader.u64("Hello.node_id")?,
            cores: reader.u16("Hello.cores")?,
        };
        reader.finish("bytes after the last field of Hello")?;
        Ok(hello)
    }
}

/// The server's answer to `Hello`: the agreed version, who it is, and a fresh nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub protocol_version: u16,
    pub node_id: u64,
    pub cores: u16,
    pub nonce: [u8; NONCE_BYTES],
}

impl EncodeMessage for Challenge {
    const KIND: FrameKind = FrameKind::Challenge;

    fn payload_len(&self) -> usize {
        12 + NONCE_BYTES
    }

    fn encode_payload(&self, out: &mut BytesMut) {
        out.put_u16(self.protocol_version);
        out.put_u64(self.node_id);
        out.put_u16(self.cores);
        out.extend_from_slice(&self.nonce);
    }
}

impl DecodeMessage for Challenge {
    fn decode_payload(payload: &Bytes) -> Result<Challenge, WireError> {
        let mut reader = PayloadReader::new(payload);
        let challenge = Challenge {
            protocol_version: reader.u16("Challenge.protocol_version")?,
            node_id: reader.u64("Challenge.node_id")?,
            cores: reader.u16("Challenge.cores")?,
            nonce: reader.array32("Challenge.nonce")?,
        };
        reader.finish("bytes after the last field of Challenge")?;
        Ok(challenge)
    }
}

/// The client's proof that it holds the cluster's shared secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof {
    pub hmac: [u8; PROOF_BYTES],
}

impl EncodeMessage for Proof {
    const KIND: FrameKind = FrameKind::Proof;

    fn payload_len(&self) -> usize {
        PROOF_BYTES
    }

    fn encode_payload(&self, out: &mut BytesMut) {
        out.extend_from_slice(&self.hmac);
    }
}

impl DecodeMessage for Proof {
    fn decode_payload(payload: &Bytes) -> Result<Proof, WireError> {
        let mut reader = PayloadReader::new(payload);
        let proof = Proof {
            hmac: reader.array32("Proof.hmac")?,
        };
        reader.finish("bytes after the last field of Proof")?;
        Ok(proof)
    }
}

/// The server accepted the proof; the connection now carries requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub meta_version: u64,
}

impl EncodeMessage for Welcome {
    const KIND: FrameKind = FrameKind::Welcome;

    fn payload_len(&self) -> usize {
        8
    }

    fn encode_payload(&self, out: &mut BytesMut) {
        out.put_u64(self.meta_version);
    }
}

impl DecodeMessage for Welcome {
    fn decode_payload(payload: &Bytes) -> Result<Welcome, WireError> {
        let mut reader = PayloadReader::new(payload);
        let welcome = Welcome {
            meta_version: reader.u64("Welcome.meta_version")?,
        };
        reader.finish("bytes after the last field of Welcome")?;
        Ok(welcome)
    }
}

/// Liveness probe; answered by `Pong`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping;

impl EncodeMessage for Ping {
    const KIND: FrameKind = FrameKind::Ping;

    fn payload_len(&self) -> usize {
        0
    }

    fn encode_payload(&self, _out: &mut BytesMut) {}
}

impl DecodeMessage for Ping {
    fn decode_payload(payload: &Bytes) -> Result<Ping, WireError> {
        PayloadReader::new(payload).finish("bytes in the payload of Ping, which has none")?;
        Ok(Ping)
    }
}

/// The answer to `Ping`: who answered and how current its meta is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pong {
    pub node_id: u64,
    pub cores: u16,
    pub meta_version: u64,
}

impl EncodeMessage for Pong {
    const KIND: FrameKind = FrameKind::Pong;

    fn payload_len(&self) -> usize {
        18
    }

    fn encode_payload(&self, out: &mut BytesMut) {
        out.put_u64(self.node_id);
        out.put_u16(self.cores);
        out.put_u64(self.meta_version);
    }
}

impl DecodeMessage for Pong {
    fn decode_payload(payload: &Bytes) -> Result<Pong, WireError> {
        let mut reader = PayloadReader::new(payload);
        let pong = Pong {
            node_id: reader.u64("Pong.node_id")?,
            cores: reader.u16("Pong.cores")?,
            meta_version: reader.u64("Pong.meta_version")?,
        };
        reader.finish("bytes after the last field of Pong")?;
        Ok(pong)
    }
}

/// A shard batch as received: `lines` is a slice of the frame payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteShard {
    pub shard_id: u64,
    pub database: String,
    pub retention_policy: String,
    pub group_start_ns: i64,
    pub group_end_ns: i64,
    /// [`Precision::code`] of the original request; decode rejects an unknown code.
    pub precision: u8,
    /// The request's arrival time, for lines without a timestamp.
    pub default_time_ns: i64,
    /// Line-protocol text, each line ending in `\n`.
    pub lines: Bytes,
}

impl WriteShard {
    /// The same batch, borrowed for encoding.
    pub fn as_ref(&self) -> WriteShardRef<'_> {
        WriteShardRef {
            shard_id: self.shard_id,
            database: &self.database,
            retention_policy: &self.retention_policy,
            group_start_ns: self.group_start_ns,
            group_end_ns: self.group_end_ns,
            precision: self.precision,
            default_time_ns: self.default_time_ns,
            lines: std::slice::from_ref(&self.lines),
        }
    }

    /// The precision the timestamps in `lines` are written in.
    pub fn precision(&self) -> Result<Precision, WireError> {
        precision_from_code(self.precision)
    }
}

fn precision_from_code(code: u8) -> Result<Precision, WireError> {
    Precision::from_code(code).ok_or(WireError::Malformed {
        what: "WriteShard.precision is not a known precision code",
    })
}

/// A shard batch as sent: the lines are slices of the original request body.
///
/// Each slice holds one or more whole lines; a slice that does not end in `\n` gets one
/// on the wire, and an empty slice adds nothing. Copies: each line byte is copied once,
/// into the output buffer (reserved once at the exact frame size), and read once more by
/// the crc; nothing is copied per line before that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteShardRef<'a> {
    pub shard_id: u64,
    pub database: &'a str,
    pub retention_policy: &'a str,
    pub group_start_ns: i64,
    pub group_end_ns: i64,
    pub precision: u8,
    pub default_time_ns: i64,
    pub lines: &'a [Bytes],
}

/// Bytes of the shard id, the five fixed-width fields and the three length prefixes.
const WRITE_SHARD_FIXED_BYTES: usize = 8 + 8 + 8 + 1 + 8 + 3 * 4;

impl WriteShardRef<'_> {
    /// Bytes of the `lines` field's content as it goes on the wire.
    pub fn lines_len(&self) -> usize {
        self.lines.iter().map(|slice| terminated_len(slice)).sum()
    }
}

/// Length of a slice once it ends in a newline (an empty slice stays empty).
fn terminated_len(slice: &[u8]) -> usize {
    match slice.last() {
        None | Some(b'\n') => slice.len(),
        Some(_) => slice.len() + 1,
    }
}

fn put_terminated(out: &mut BytesMut, slice: &[u8]) {
    out.extend_from_slice(slice);
    if terminated_len(slice) > slice.len() {
        out.put_u8(b'\n');
    }
}

impl EncodeMessage for WriteShardRef<'_> {
    const KIND: FrameKind = FrameKind::WriteShard;

    fn payload_len(&self) -> usize {
        WRITE_SHARD_FIXED_BYTES
            + self.database.len()
            + self.retention_policy.len()
            + self.lines_len()
    }

    fn encode_payload(&self, out: &mut BytesMut) {
        out.put_u64(self.shard_id);
        put_prefixed(out, self.database.as_bytes());
        put_prefixed(out, self.retention_policy.as_bytes());
        out.put_i64(self.group_start_ns);
        out.put_i64(self.group_end_ns);
        out.put_u8(self.precision);
        out.put_i64(self.default_time_ns);
        out.put_u32(u32::try_from(self.lines_len()).unwrap_or(u32::MAX));
        for slice in self.lines {
            put_terminated(out, slice);
        }
    }
}

impl EncodeMessage for WriteShard {
    const KIND: FrameKind = FrameKind::WriteShard;

    fn payload_len(&self) -> usize {
        self.as_ref().payload_len()
    }

    fn encode_payload(&self, out: &mut BytesMut) {
        self.as_ref().encode_payload(out)
    }
}

impl DecodeMessage for WriteShard {
    fn decode_payload(payload: &Bytes) -> Result<WriteShard, WireError> {
        let mut reader = PayloadReader::new(payload);
        let utf8 = "WriteShard names are not UTF-8";
        let write = WriteShard {
            shard_id: reader.u64("WriteShard.shard_id")?,
            database: reader.string("WriteShard.database", utf8)?,
            retention_policy: reader.string("WriteShard.retention_policy", utf8)?,
            group_start_ns: reader.i64("WriteShard.group_start_ns")?,
            group_end_ns: reader.i64("WriteShard.group_end_ns")?,
            precision: precision_from_code(reader.u8("WriteShard.precision")?)?.code(),
            default_time_ns: reader.i64("WriteShard.default_time_ns")?,
            lines: reader.bytes("WriteShard.lines")?,
        };
        reader.finish("bytes after the last field of WriteShard")?;
        Ok(write)
    }
}

/// How the owner handled a `WriteShard`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteShardStatus {
    /// Appended to the WAL and applied to the cache.
    Ok { points_written: u32 },
    /// May succeed later (shard busy, node shutting down): hinted handoff may queue it.
    Retryable { message: String },
    /// Will never succeed (field type conflict, malformed points): never queued.
    Permanent { message: String },
}

/// The answer to `WriteShard`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteShardResponse {
    pub status: WriteShardStatus,
}

const STATUS_OK: u8 = 0;
const STATUS_RETRYABLE: u8 = 1;
const STATUS_PERMANENT: u8 = 2;
const UNKNOWN_STATUS: &str =
    "WriteShardResponse.status is not ok (0), retryable (1) or permanent (2)";

impl EncodeMessage for WriteShardResponse {
    const KIND: FrameKind = FrameKind::WriteShardResponse;

    fn payload_len(&self) -> usize {
        1 + match &self.status {
            WriteShardStatus::Ok { .. } => 4,
            WriteShardStatus::Retryable { message } | WriteShardStatus::Permanent { message } => {
                prefixed_len(message.as_bytes())
            }
        }
    }

    fn encode_payload(&self, out: &mut BytesMut) {
        match &self.status {
            WriteShardStatus::Ok { points_written } => {
                out.put_u8(STATUS_OK);
                out.put_u32(*points_written);
            }
            WriteShardStatus::Retryable { message } => {
                out.put_u8(STATUS_RETRYABLE);
                put_prefixed(out, message.as_bytes());
            }
            WriteShardStatus::Permanent { message } => {
                out.put_u8(STATUS_PERMANENT);
                put_prefixed(out, message.as_bytes());
            }
        }
    }
}

impl DecodeMessage for WriteShardResponse {
    fn decode_payload(payload: &Bytes) -> Result<WriteShardResponse, WireError> {
        let mut reader = PayloadReader::new(payload);
        let message = "WriteShardResponse.message";
        let utf8 = "WriteShardResponse.message is not UTF-8";
        let status = match reader.u8("WriteShardResponse.status")? {
            STATUS_OK => WriteShardStatus::Ok {
                points_written: reader.u32("WriteShardResponse.points_written")?,
            },
            STATUS_RETRYABLE => WriteShardStatus::Retryable {
                message: reader.string(message, utf8)?,
            },
            STATUS_PERMANENT => WriteShardStatus::Permanent {
                message: reader.string(message, utf8)?,
            },
            _ => {
                return Err(WireError::Malformed {
                    what: UNKNOWN_STATUS,
                })
            }
        };
        reader.finish("bytes after the last field of WriteShardResponse")?;
        Ok(WriteShardResponse { status })
    }
}

/// A failure that ends a request, or the connection (handshake and framing errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorMessage {
    pub code: u16,
    pub message: String,
}

impl ErrorMessage {
    /// The peer's frame could not be decoded; the connection closes.
    pub const MALFORMED_FRAME: u16 = 1;
    /// No protocol version in common; the connection closes.
    pub const UNSUPPORTED_VERSION: u16 = 2;
    /// The handshake proof did not verify; the connection closes.
    pub const BAD_PROOF: u16 = 3;
    /// A frame of the wrong type for the connection's state; the connection closes.
    pub const UNEXPECTED_FRAME: u16 = 4;
    /// The proof verified, but the node id is not one of the receiver's configured
    /// peers; the connection closes.
    pub const UNKNOWN_NODE: u16 = 5;

    /// The message to send a peer before closing its connection for `error`.
    pub fn from_wire_error(error: &WireError) -> ErrorMessage {
        ErrorMessage {
            code: error.error_code(),
            message: error.to_string(),
        }
    }
}

impl EncodeMessage for ErrorMessage {
    const KIND: FrameKind = FrameKind::Error;

    fn payload_len(&self) -> usize {
        2 + prefixed_len(self.message.as_bytes())
    }

    fn encode_payload(&self, out: &mut BytesMut) {
        out.put_u16(self.code);
        put_prefixed(out, self.message.as_bytes());
    }
}

impl DecodeMessage for ErrorMessage {
    fn decode_payload(payload: &Bytes) -> Result<ErrorMessage, WireError> {
        let mut reader = PayloadReader::new(payload);
        let error = ErrorMessage {
            code: reader.u16("Error.code")?,
            message: reader.string("Error.message", "Error.message is not UTF-8")?,
        };
        reader.finish("bytes after the last field of Error")?;
        Ok(error)
    }
}

/// The version a server speaks with a client whose highest version is `theirs`: the
/// highest both speak.
pub fn negotiate(ours_min: u16, ours_max: u16, theirs: u16) -> Result<u16, WireError> {
    let agreed = ours_max.min(theirs);
    if agreed < ours_min || ours_min > ours_max {
        return Err(WireError::UnsupportedVersion {
            theirs,
            ours_min,
            ours_max,
        });
    }
    Ok(agreed)
}

/// Checks, on the client, the version the server chose in its `Challenge`.
pub fn accept_version(ours_min: u16, ours_max: u16, agreed: u16) -> Result<u16, WireError> {
    if (ours_min..=ours_max).contains(&agreed) {
        Ok(agreed)
    } else {
        Err(WireError::UnsupportedVersion {
            theirs: agreed,
            ours_min,
            ours_max,
        })
    }
}

type HmacSha256 = Hmac<Sha256>;

fn proof_mac(shared_secret: &[u8], nonce: &[u8; NONCE_BYTES], client_node_id: u64) -> HmacSha256 {
    // HMAC hashes a long key and pads a short one: every key length is valid.
    let mut mac =
        HmacSha256::new_from_slice(shared_secret).expect("HMAC accepts keys of any length");
    mac.update(PROOF_CONTEXT);
    mac.update(nonce);
    mac.update(&client_node_id.to_be_bytes());
    mac
}

/// The client's proof: HMAC-SHA256(secret, "shardcore-cluster-v1" || nonce || node id BE).
pub fn compute_proof(
    shared_secret: &[u8],
    nonce: &[u8; NONCE_BYTES],
    client_node_id: u64,
) -> [u8; PROOF_BYTES] {
    proof_mac(shared_secret, nonce, client_node_id)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a client's proof in constant time.
pub fn verify_proof(
    shared_secret: &[u8],
    nonce: &[u8; NONCE_BYTES],
    client_node_id: u64,
    proof: &[u8; PROOF_BYTES],
) -> Result<(), WireError> {
    proof_mac(shared_secret, nonce, client_node_id)
        .verify_slice(proof)
        .map_err(|_| WireError::BadProof)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_of<M: EncodeMessage>(request_id: u64, message: &M) -> BytesMut {
        let mut out = BytesMut::new();
        encode_message(request_id, message, &mut out).unwrap();
        out
    }

    /// Decodes every whole frame in `buffer`; stops at the first error.
    fn drain(decoder: &FrameDecoder, buffer: &mut BytesMut) -> Result<Vec<Frame>, WireError> {
        let mut frames = Vec::new();
        while let Some(frame) = decoder.decode(buffer)? {
            frames.push(frame);
        }
        Ok(frames)
    }

    fn round_trip<M: DecodeMessage + PartialEq + std::fmt::Debug>(message: M) {
        let mut buffer = frame_of(42, &message);
        assert_eq!(buffer.len(), message.frame_len());
        let frame = FrameDecoder::default()
            .decode(&mut buffer)
            .unwrap()
            .unwrap();
        assert!(buffer.is_empty());
        assert_eq!(
            (frame.kind, frame.flags, frame.request_id),
            (M::KIND, 0, 42)
        );
        assert_eq!(frame.decode_message::<M>().unwrap(), message);
    }

    fn sample_write() -> WriteShard {
        WriteShard {
            shard_id: 0xdead_beef_0123_4567,
            database: "telegraf".into(),
            retention_policy: "autogen".into(),
            group_start_ns: 1_700_000_000_000_000_000,
            group_end_ns: 1_700_604_800_000_000_000,
            precision: Precision::Millisecond.code(),
            default_time_ns: -5,
            lines: Bytes::from_static(b"cpu,host=a usage=1 1\nmem,host=b free=2i 2\n"),
        }
    }

    /// One of every message, for the tests that go over all of them.
    fn every_message() -> Vec<(FrameKind, BytesMut)> {
        vec![
            (
                FrameKind::Hello,
                frame_of(
                    0,
                    &Hello {
                        protocol_version: 1,
                        node_id: 7,
                        cores: 2,
                    },
                ),
            ),
            (
                FrameKind::Challenge,
                frame_of(
                    0,
                    &Challenge {
                        protocol_version: 1,
                        node_id: 9,
                        cores: 4,
                        nonce: [5; 32],
                    },
                ),
            ),
            (FrameKind::Proof, frame_of(0, &Proof { hmac: [0xab; 32] })),
            (
                FrameKind::Welcome,
                frame_of(0, &Welcome { meta_version: 77 }),
            ),
            (FrameKind::Ping, frame_of(1, &Ping)),
            (
                FrameKind::Pong,
                frame_of(
                    1,
                    &Pong {
                        node_id: 3,
                        cores: 2,
                        meta_version: 12,
                    },
                ),
            ),
            (FrameKind::WriteShard, frame_of(2, &sample_write())),
            (
                FrameKind::WriteShardResponse,
                frame_of(
                    2,
                    &WriteShardResponse {
                        status: WriteShardStatus::Ok { points_written: 9 },
                    },
                ),
            ),
            (
                FrameKind::WriteShardResponse,
                frame_of(
                    2,
                    &WriteShardResponse {
                        status: WriteShardStatus::Permanent {
                            message: "field type conflict".into(),
                        },
                    },
                ),
            ),
            (
                FrameKind::Error,
                frame_of(
                    3,
                    &ErrorMessage {
                        code: 1,
                        message: "bad".into(),
                    },
                ),
            ),
        ]
    }

    /// Decodes a payload as the message its frame type names.
    fn decode_as(kind: FrameKind, payload: &Bytes) -> Result<(), WireError> {
        match kind {
            FrameKind::Hello => Hello::decode_payload(payload).map(drop),
            FrameKind::Challenge => Challenge::decode_payload(payload).map(drop),
            FrameKind::Proof => Proof::decode_payload(payload).map(drop),
            FrameKind::Welcome => Welcome::decode_payload(payload).map(drop),
            FrameKind::Ping => Ping::decode_payload(payload).map(drop),
            FrameKind::Pong => Pong::decode_payload(payload).map(drop),
            FrameKind::WriteShard => WriteShard::decode_payload(payload).map(drop),
            FrameKind::WriteShardResponse => WriteShardResponse::decode_payload(payload).map(drop),
            FrameKind::Error => ErrorMessage::decode_payload(payload).map(drop),
            FrameKind::MetaSync
            | FrameKind::MetaSyncResponse
            | FrameKind::MapShard
            | FrameKind::MapShardResponse
            | FrameKind::Admin
            | FrameKind::AdminResponse => Ok(()),
        }
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(Hello {
            protocol_version: PROTOCOL_VERSION,
            node_id: u64::MAX,
            cores: 64,
        });
        round_trip(Challenge {
            protocol_version: 1,
            node_id: 2,
            cores: 3,
            nonce: [0x5a; 32],
        });
        round_trip(Proof {
            hmac: compute_proof(b"secret", &[1; 32], 4),
        });
        round_trip(Welcome {
            meta_version: 1 << 40,
        });
        round_trip(Ping);
        round_trip(Pong {
            node_id: 1,
            cores: 2,
            meta_version: 3,
        });
        round_trip(sample_write());
        round_trip(WriteShard {
            lines: Bytes::new(),
            database: String::new(),
            ..sample_write()
        });
        round_trip(WriteShardResponse {
            status: WriteShardStatus::Ok {
                points_written: u32::MAX,
            },
        });
        round_trip(WriteShardResponse {
            status: WriteShardStatus::Retryable {
                message: "shard 17 is recovering".into(),
            },
        });
        round_trip(WriteShardResponse {
            status: WriteShardStatus::Permanent {
                message: "field type conflict: input field \"usage\" is type integer".into(),
            },
        });
        round_trip(ErrorMessage {
            code: ErrorMessage::BAD_PROOF,
            message: "nope ✗".into(),
        });
    }

    #[test]
    fn raw_frames_keep_flags_request_id_and_reserved_kinds() {
        for kind in FrameKind::ALL {
            let frame = Frame {
                kind,
                flags: 0xa5,
                request_id: u64::MAX - 1,
                payload: Bytes::from_static(b"xyz"),
            };
            let mut buffer = BytesMut::new();
            encode_frame(&frame, &mut buffer).unwrap();
            assert_eq!(buffer.len(), FRAME_HEADER_BYTES + 3);
            assert_eq!(FrameDecoder::default().decode(&mut buffer), Ok(Some(frame)));
        }
    }

    #[test]
    fn header_layout_matches_the_documented_table() {
        let frame = Frame::new(
            FrameKind::Pong,
            0x0102_0304_0506_0708,
            Bytes::from_static(b"ab"),
        );
        let mut buffer = BytesMut::new();
        encode_frame(&frame, &mut buffer).unwrap();
        let crc = crc32c::crc32c(b"ab").to_be_bytes();
        let mut expected = vec![0x11, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 2];
        expected.extend_from_slice(&crc);
        expected.extend_from_slice(b"ab");
        assert_eq!(&buffer[..], &expected[..]);
    }

    #[test]
    fn frame_kind_values_are_exactly_the_known_ones() {
        for value in 0..=u8::MAX {
            match FrameKind::try_from(value) {
                Ok(kind) => assert_eq!(u8::from(kind), value),
                Err(error) => assert_eq!(error, WireError::UnknownFrameType { kind: value }),
            }
        }
        assert!(FrameKind::ALL
            .windows(2)
            .all(|pair| (pair[0] as u8) < (pair[1] as u8)));
    }

    #[test]
    fn decoder_yields_both_frames_at_every_split_point() {
        let mut stream = frame_of(5, &sample_write());
        stream.extend_from_slice(&frame_of(
            6,
            &Pong {
                node_id: 1,
                cores: 2,
                meta_version: 3,
            },
        ));
        let decoder = FrameDecoder::default();
        let expected = drain(&decoder, &mut stream.clone()).unwrap();
        assert_eq!(expected.len(), 2);
        for split in 0..=stream.len() {
            let mut buffer = BytesMut::from(&stream[..split]);
            let mut frames = drain(&decoder, &mut buffer).unwrap();
            buffer.extend_from_slice(&stream[split..]);
            frames.extend(drain(&decoder, &mut buffer).unwrap());
            assert_eq!(frames, expected, "split at {split}");
            assert!(buffer.is_empty());
        }
    }

    #[test]
    fn decoder_fed_byte_by_byte_yields_both_frames() {
        let mut stream = frame_of(5, &Ping);
        stream.extend_from_slice(&frame_of(6, &sample_write()));
        let decoder = FrameDecoder::default();
        let mut buffer = BytesMut::new();
        let mut frames = Vec::new();
        for byte in stream.iter() {
            buffer.put_u8(*byte);
            frames.extend(drain(&decoder, &mut buffer).unwrap());
        }
        assert_eq!(
            frames.iter().map(|f| f.request_id).collect::<Vec<_>>(),
            [5, 6]
        );
        assert_eq!(
            frames[1].decode_message::<WriteShard>().unwrap(),
            sample_write()
        );
    }

    #[test]
    fn partial_frame_leaves_the_buffer_untouched() {
        let stream = frame_of(5, &sample_write());
        for split in 0..stream.len() {
            let mut buffer = BytesMut::with_capacity(stream.len());
            buffer.extend_from_slice(&stream[..split]);
            let (pointer, capacity) = (buffer.as_ptr(), buffer.capacity());
            assert_eq!(FrameDecoder::default().decode(&mut buffer), Ok(None));
            assert_eq!(
                (buffer.as_ptr(), buffer.capacity(), buffer.len()),
                (pointer, capacity, split)
            );
        }
    }

    #[test]
    fn payload_and_lines_are_slices_of_the_read_buffer() {
        let mut buffer = frame_of(5, &sample_write());
        let read_range = buffer.as_ptr_range();
        let frame = FrameDecoder::default()
            .decode(&mut buffer)
            .unwrap()
            .unwrap();
        let payload_range = frame.payload.as_ptr_range();
        assert!(read_range.start <= payload_range.start && payload_range.end <= read_range.end);
        let write = frame.decode_message::<WriteShard>().unwrap();
        let lines_range = write.lines.as_ptr_range();
        assert!(payload_range.start <= lines_range.start && lines_range.end == payload_range.end);
        assert_eq!(write.lines, sample_write().lines);
    }

    #[test]
    fn bad_crc_is_rejected() {
        let mut buffer = frame_of(
            5,
            &Pong {
                node_id: 1,
                cores: 2,
                meta_version: 3,
            },
        );
        let expected = u32::from_be_bytes(buffer[14..18].try_into().unwrap());
        buffer[FRAME_HEADER_BYTES] ^= 0x01;
        let actual = crc32c::crc32c(&buffer[FRAME_HEADER_BYTES..]);
        let error = FrameDecoder::default().decode(&mut buffer).unwrap_err();
        assert_eq!(error, WireError::BadCrc { expected, actual });
        assert_eq!(
            FrameDecoder::default().decode(&mut buffer).unwrap_err(),
            error,
            "sticky"
        );
    }

    #[test]
    fn unknown_type_is_rejected_once_the_header_arrives() {
        for kind in [0x00, 0x05, 0x12, 0x42, 0x80, 0xff] {
            let mut buffer = frame_of(5, &Ping);
            buffer[0] = kind;
            assert_eq!(
                FrameDecoder::default().decode(&mut buffer),
                Err(WireError::UnknownFrameType { kind })
            );
            let mut short = BytesMut::from(&buffer[..FRAME_HEADER_BYTES - 1]);
            assert_eq!(FrameDecoder::default().decode(&mut short), Ok(None));
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_the_payload_arrives() {
        let decoder = FrameDecoder::new(HANDSHAKE_MAX_PAYLOAD_BYTES);
        let header = FrameHeader {
            kind: FrameKind::WriteShard,
            flags: 0,
            request_id: 1,
            payload_len: HANDSHAKE_MAX_PAYLOAD_BYTES + 1,
            payload_crc32c: 0,
        };
        let mut buffer = BytesMut::new();
        header.write(&mut buffer);
        let error = decoder.decode(&mut buffer).unwrap_err();
        assert_eq!(
            error,
            WireError::FrameTooLarge {
                len: 4097,
                max: 4096
            }
        );
        assert!(error.to_string().contains("max_payload_bytes"));
        let mut at_bound = BytesMut::new();
        FrameHeader {
            payload_len: HANDSHAKE_MAX_PAYLOAD_BYTES,
            ..header
        }
        .write(&mut at_bound);
        assert_eq!(decoder.decode(&mut at_bound), Ok(None));
        assert_eq!(FrameDecoder::default().max_payload_bytes(), 64 << 20);
    }

    #[test]
    fn every_truncated_payload_is_truncated_and_every_extended_one_malformed() {
        for (kind, frame) in every_message() {
            let payload = Bytes::copy_from_slice(&frame[FRAME_HEADER_BYTES..]);
            decode_as(kind, &payload).unwrap();
            for len in 0..payload.len() {
                let error = decode_as(kind, &payload.slice(..len)).unwrap_err();
                assert!(
                    matches!(error, WireError::Truncated { .. }),
                    "{kind:?} at {len}: {error}"
                );
            }
            let mut extended = BytesMut::from(&payload[..]);
            extended.put_u8(0);
            let error = decode_as(kind, &extended.freeze()).unwrap_err();
            assert!(
                matches!(error, WireError::Malformed { .. }),
                "{kind:?}: {error}"
            );
        }
    }

    #[test]
    fn invalid_fields_are_malformed() {
        let mut response = BytesMut::from(&[7u8, 0, 0, 0, 0][..]);
        let error = WriteShardResponse::decode_payload(&response.split().freeze()).unwrap_err();
        assert!(matches!(error, WireError::Malformed { .. }), "{error}");

        let error = ErrorMessage::decode_payload(&Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0xff]))
            .unwrap_err();
        assert_eq!(
            error,
            WireError::Malformed {
                what: "Error.message is not UTF-8"
            }
        );

        let bad_precision = WriteShard {
            precision: 6,
            ..sample_write()
        };
        let payload = frame_of(1, &bad_precision)
            .split_off(FRAME_HEADER_BYTES)
            .freeze();
        let error = WriteShard::decode_payload(&payload).unwrap_err();
        assert!(error.to_string().contains("precision"), "{error}");
        assert_eq!(sample_write().precision(), Ok(Precision::Millisecond));
    }

    #[test]
    fn decode_message_checks_the_frame_type() {
        let frame = FrameDecoder::default()
            .decode(&mut frame_of(1, &Ping))
            .unwrap()
            .unwrap();
        let error = frame.decode_message::<Pong>().unwrap_err();
        assert_eq!(
            error,
            WireError::UnexpectedFrame {
                expected: FrameKind::Pong,
                actual: FrameKind::Ping
            }
        );
        let reply = ErrorMessage::from_wire_error(&error);
        assert_eq!(reply.code, ErrorMessage::UNEXPECTED_FRAME);
    }

    #[test]
    fn write_shard_encodes_body_slices_newline_terminated() {
        let body = Bytes::from_static(b"a x=1 1\nb x=2 2\nc x=3 3");
        let slices = [
            body.slice(0..7),
            body.slice(8..16),
            Bytes::new(),
            body.slice(16..),
        ];
        let sample = sample_write();
        let write = WriteShardRef {
            lines: &slices,
            ..sample.as_ref()
        };
        let mut out = BytesMut::with_capacity(write.frame_len());
        let pointer = out.as_ptr();
        encode_message(9, &write, &mut out).unwrap();
        assert_eq!(out.as_ptr(), pointer, "the frame fits the reserved size");
        assert_eq!(out.len(), write.frame_len());
        let frame = FrameDecoder::default().decode(&mut out).unwrap().unwrap();
        let decoded = frame.decode_message::<WriteShard>().unwrap();
        assert_eq!(&decoded.lines[..], b"a x=1 1\nb x=2 2\nc x=3 3\n");
    }

    #[test]
    fn encode_appends_after_existing_bytes() {
        let mut out = frame_of(1, &Ping);
        encode_message(2, &Welcome { meta_version: 3 }, &mut out).unwrap();
        let frames = drain(&FrameDecoder::default(), &mut out).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(
            frames[1].decode_message::<Welcome>(),
            Ok(Welcome { meta_version: 3 })
        );
    }

    #[test]
    fn proof_verifies_only_with_the_same_secret_nonce_and_node() {
        let nonce = [7u8; NONCE_BYTES];
        let proof = compute_proof(b"cluster secret", &nonce, 3);
        assert_eq!(verify_proof(b"cluster secret", &nonce, 3, &proof), Ok(()));
        assert_eq!(
            verify_proof(b"cluster secreT", &nonce, 3, &proof),
            Err(WireError::BadProof)
        );
        let mut other_nonce = nonce;
        other_nonce[31] ^= 1;
        assert_eq!(
            verify_proof(b"cluster secret", &other_nonce, 3, &proof),
            Err(WireError::BadProof)
        );
        assert_eq!(
            verify_proof(b"cluster secret", &nonce, 4, &proof),
            Err(WireError::BadProof)
        );
        let mut forged = proof;
        forged[0] ^= 0x80;
        assert_eq!(
            verify_proof(b"cluster secret", &nonce, 3, &forged),
            Err(WireError::BadProof)
        );
    }

    #[test]
    fn proof_is_hmac_sha256_over_context_nonce_and_node_id() {
        let nonce = [9u8; NONCE_BYTES];
        let mut mac = HmacSha256::new_from_slice(b"k").unwrap();
        let mut message = b"shardcore-cluster-v1".to_vec();
        message.extend_from_slice(&nonce);
        message.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        mac.update(&message);
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(compute_proof(b"k", &nonce, 0x102), expected);
        assert_ne!(compute_proof(b"", &nonce, 0x102), expected);
    }

    #[test]
    fn negotiate_picks_the_highest_common_version() {
        assert_eq!(negotiate(1, 1, 1), Ok(1));
        assert_eq!(negotiate(1, 3, 2), Ok(2));
        assert_eq!(
            negotiate(1, 3, 9),
            Ok(3),
            "a newer peer falls back to our highest"
        );
        let error = negotiate(2, 3, 1).unwrap_err();
        assert_eq!(
            error,
            WireError::UnsupportedVersion {
                theirs: 1,
                ours_min: 2,
                ours_max: 3
            }
        );
        assert!(error.to_string().contains("upgrade"));
        assert!(negotiate(1, 1, 0).is_err());
        assert!(negotiate(3, 2, 2).is_err(), "an empty range speaks nothing");
        assert_eq!(
            negotiate(MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, PROTOCOL_VERSION),
            Ok(1)
        );
    }

    #[test]
    fn client_accepts_only_a_version_it_speaks() {
        assert_eq!(accept_version(1, 2, 2), Ok(2));
        assert!(accept_version(1, 2, 3).is_err());
        assert!(accept_version(2, 2, 1).is_err());
    }

    #[test]
    fn error_codes_follow_the_wire_error() {
        assert_eq!(WireError::BadProof.error_code(), ErrorMessage::BAD_PROOF);
        let version = WireError::UnsupportedVersion {
            theirs: 0,
            ours_min: 1,
            ours_max: 1,
        };
        assert_eq!(version.error_code(), ErrorMessage::UNSUPPORTED_VERSION);
        assert_eq!(
            WireError::UnknownFrameType { kind: 0 }.error_code(),
            ErrorMessage::MALFORMED_FRAME
        );
    }

    /// Splits `bytes` into chunks at the given cut points.
    fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        points
            .windows(2)
            .map(|pair| bytes[pair[0]..pair[1]].to_vec())
            .collect()
    }

    /// Feeds the chunks in order; returns the frames and the error that ended the stream.
    fn feed(decoder: &FrameDecoder, chunks: &[Vec<u8>]) -> (Vec<Frame>, Option<WireError>) {
        let mut buffer = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in chunks {
            buffer.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buffer) {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(error) => return (frames, Some(error)),
                }
            }
        }
        (frames, None)
    }

    fn reencode(frames: &[Frame]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for frame in frames {
            encode_frame(frame, &mut out).unwrap();
        }
        out.to_vec()
    }

    /// Valid frames of every kind, then corrupted at a few positions.
    fn mostly_valid_stream() -> impl Strategy<Value = Vec<u8>> {
        let frame = (
            0usize..FrameKind::ALL.len(),
            any::<u8>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(kind, flags, request_id, payload)| Frame {
                kind: FrameKind::ALL[kind],
                flags,
                request_id,
                payload: payload.into(),
            });
        let flips = prop::collection::vec((any::<usize>(), any::<u8>()), 0..3);
        (prop::collection::vec(frame, 1..5), flips).prop_map(|(frames, flips)| {
            let mut stream = reencode(&frames);
            for (at, mask) in flips {
                let len = stream.len();
                stream[at % len] ^= mask;
            }
            stream
        })
    }

    fn check_stream(
        stream: &[u8],
        cuts: &[usize],
        max_payload_bytes: u32,
    ) -> Result<(), TestCaseError> {
        let decoder = FrameDecoder::new(max_payload_bytes);
        let (whole_frames, whole_error) = feed(&decoder, &[stream.to_vec()]);
        let (frames, error) = feed(&decoder, &chunks(stream, cuts));
        prop_assert_eq!(&frames, &whole_frames, "chunking changes nothing");
        prop_assert_eq!(&error, &whole_error);
        let consumed = reencode(&frames);
        prop_assert_eq!(&consumed[..], &stream[..consumed.len()]);
        for frame in &frames {
            let _ = decode_as(frame.kind, &frame.payload);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_in_any_chunking_never_panic(
            stream in prop::collection::vec(any::<u8>(), 0..512),
            cuts in prop::collection::vec(any::<usize>(), 0..16),
            max_payload_bytes in prop_oneof![Just(DEFAULT_MAX_PAYLOAD_BYTES), 0u32..300],
        ) {
            check_stream(&stream, &cuts, max_payload_bytes)?;
        }

        #[test]
        fn corrupted_frame_streams_in_any_chunking_never_panic(
            stream in mostly_valid_stream(),
            cuts in prop::collection::vec(any::<usize>(), 0..16),
        ) {
            check_stream(&stream, &cuts, 48)?;
        }

        #[test]
        fn arbitrary_payloads_never_panic_any_message_decoder(
            payload in prop::collection::vec(any::<u8>(), 0..128),
        ) {
            let payload = Bytes::from(payload);
            for kind in FrameKind::ALL {
                let _ = decode_as(kind, &payload);
            }
        }

        #[test]
        fn write_shard_round_trips_any_names_and_line_slices(
            shard_id in any::<u64>(),
            database in ".{0,40}",
            retention_policy in ".{0,40}",
            times in any::<(i64, i64, i64)>(),
            precision in 0u8..6,
            lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..20),
        ) {
            let body = Bytes::from(lines.concat());
            let mut slices = Vec::new();
            let mut start = 0;
            for line in &lines {
                slices.push(body.slice(start..start + line.len()));
                start += line.len();
            }
            let write = WriteShardRef {
                shard_id,
                database: &database,
                retention_policy: &retention_policy,
                group_start_ns: times.0,
                group_end_ns: times.1,
                precision,
                default_time_ns: times.2,
                lines: &slices,
            };
            let mut buffer = frame_of(shard_id, &write);
            let frame = FrameDecoder::default().decode(&mut buffer).unwrap().unwrap();
            let decoded = frame.decode_message::<WriteShard>().unwrap();
            let mut expected_lines = Vec::new();
            for line in &lines {
                expected_lines.extend_from_slice(line);
                if line.last().is_some_and(|byte| *byte != b'\n') {
                    expected_lines.push(b'\n');
                }
            }
            prop_assert_eq!(&decoded.lines[..], &expected_lines[..]);
            prop_assert_eq!(decoded.as_ref(), WriteShardRef { lines: std::slice::from_ref(&decoded.lines), ..write });
            prop_assert_eq!(frame_of(shard_id, &decoded), frame_of(shard_id, &write));
        }
    }
}
