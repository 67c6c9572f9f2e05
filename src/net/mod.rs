//! The transport: how bytes and messages move, with no idea of what they mean.
//!
//! - `wire`: the node-to-node frame format, handshake and message codecs (pure bytes).
//! - `conn`: a framed node-to-node connection, the handshake, and the shared send half.
//! - `pipeline`: one pooled connection with many requests in flight, answered by id.
//! - `mesh`: the channels between the cores of one node, generic over the message.
//! - `handoff`: a client socket moving from one core to another.
//! - `tls`: rustls configurations from PEM files (HTTPS; mutual TLS on the cluster ports).
//!
//! **Invariant:** nothing here knows a payload type: `wire` knows frames and the
//! handshake, the mesh carries whatever message type the composition root gives it.

pub mod conn;
pub mod handoff;
pub mod mesh;
pub mod pipeline;
pub mod tls;
pub mod wire;
