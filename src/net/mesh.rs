//! The channels between the cores of one node, and the per-core handle that sends on
//! them. Generic over the message: the composition root (`node`) owns the message
//! type, so the transport knows no payload.
//!
//! Requests carry their own reply channel (`futures` oneshot: glommio wakes a task on
//! another core through it).
//!
//! Bounds: each ordered pair of cores has a channel of `mesh-channel-capacity`
//! messages; a sender that finds it full waits (backpressure onto the HTTP request,
//! whose own count is bounded per core).

use futures_channel::oneshot;
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

/// Errors of a mesh round trip.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    #[error("core {core} is not reachable (shutting down?)")]
    Unreachable { core: usize },
    #[error("core {core} dropped the request without an answer")]
    NoReply { core: usize },
}

/// This core's senders to every other core.
pub struct Mesh<M: Send + 'static> {
    core: usize,
    senders: Vec<Option<ConnectedSender<M>>>,
}

impl<M: Send + 'static> Mesh<M> {
    pub fn new(core: usize, senders: Vec<Option<ConnectedSender<M>>>) -> Mesh<M> {
        Mesh { core, senders }
    }

    pub fn core(&self) -> usize {
        self.core
    }

    pub fn cores(&self) -> usize {
        self.senders.len()
    }

    /// Sends a request to another core. Sending to ourselves is a bug.
    pub async fn send(&self, to: usize, request: M) -> Result<(), MeshError> {
        debug_assert_ne!(to, self.core, "never send a mesh message to yourself");
        let sender = self
            .senders
            .get(to)
            .and_then(|s| s.as_ref())
            .ok_or(MeshError::Unreachable { core: to })?;
        sender
            .send(request)
            .await
            .map_err(|_| MeshError::Unreachable { core: to })
    }

    /// Sends a request built around a fresh reply channel and waits for the answer.
    pub async fn call<T>(
        &self,
        to: usize,
        make: impl FnOnce(oneshot::Sender<T>) -> M,
    ) -> Result<T, MeshError> {
        let (tx, rx) = oneshot::channel();
        self.send(to, make(tx)).await?;
        rx.await.map_err(|_| MeshError::NoReply { core: to })
    }
}

/// One core's channel ends, created before the executors start.
pub struct CoreChannels<M: Send + 'static> {
    pub senders: Vec<Option<SharedSender<M>>>,
    pub receivers: Vec<SharedReceiver<M>>,
}

/// Builds the full mesh: a bounded channel of `capacity` messages for every ordered
/// pair of distinct cores.
pub fn build<M: Send + 'static>(cores: usize, capacity: usize) -> Vec<CoreChannels<M>> {
    let mut chans: Vec<CoreChannels<M>> = (0..cores)
        .map(|_| CoreChannels {
            senders: (0..cores).map(|_| None).collect(),
            receivers: Vec::new(),
        })
        .collect();
    for from in 0..cores {
        for to in 0..cores {
            if from == to {
                continue;
            }
            let (tx, rx) = shared_channel::new_bounded(capacity);
            chans[from].senders[to] = Some(tx);
            chans[to].receivers.push(rx);
        }
    }
    chans
}

/// The receiving end of another core's channel to this one.
pub type Receiver<M> = ConnectedReceiver<M>;

/// Connects every channel end of this core (each waits for its peer on the other
/// core): this core's [`Mesh`] and the receivers it serves.
pub async fn connect<M: Send + 'static>(
    core: usize,
    channels: CoreChannels<M>,
) -> (Mesh<M>, Vec<ConnectedReceiver<M>>) {
    let sender_tasks: Vec<_> = channels
        .senders
        .into_iter()
        .map(|s| {
            glommio::spawn_local(async move {
                match s {
                    Some(s) => Some(s.connect().await),
                    None => None,
                }
            })
        })
        .collect();
    let receiver_tasks: Vec<_> = channels
        .receivers
        .into_iter()
        .map(|r| glommio::spawn_local(r.connect()))
        .collect();
    let mut senders = Vec::new();
    for t in sender_tasks {
        senders.push(t.await);
    }
    let mut receivers = Vec::new();
    for t in receiver_tasks {
        receivers.push(t.await);
    }
    (Mesh::new(core, senders), receivers)
}
