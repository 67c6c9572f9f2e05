//! Operations that reach every node: the statements running (SHOW QUERIES), killing
//! one (KILL QUERY) and dropping a shard (DROP SHARD).
//!
//! Each core keeps a [`QueryRegistry`] of the statements it coordinates; a statement's
//! id (`ClusterShardMapper::next_query_id`) carries its node and core, so a kill goes
//! straight to the one core running it. Across nodes the requests travel as `Admin`
//! frames (JSON, owned here; opaque to `net::wire`), served by the cluster service over
//! this node's cores (`LocalNode`).

use crate::influxql::parser::Statement;
use crate::net::wire::{opaque_message, FrameKind};
use crate::tsdb::read::cancel::Deadline;
use bytes::Bytes;
use futures_channel::oneshot;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

/// A statement running on some core, as SHOW QUERIES lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningQuery {
    pub qid: u64,
    pub query: String,
    pub database: String,
    pub duration_ns: u64,
    /// `running`, or `killed` until the statement ends.
    pub status: String,
}

/// A request to another node's cluster service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Every statement running on the node.
    Queries,
    /// Kills a statement this node runs: whether it was running.
    Kill { qid: u64 },
    /// Drops this node's partitions of a shard: how many.
    DropShard { id: u64 },
}

/// A node's answer to an [`AdminRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminResponse {
    Queries(Vec<RunningQuery>),
    Killed(bool),
    Dropped(usize),
    Error(String),
}

/// An [`AdminRequest`] on the wire.
#[derive(Clone, Debug)]
pub struct Admin {
    pub json: Bytes,
}

/// An [`AdminResponse`] on the wire.
#[derive(Clone, Debug)]
pub struct AdminReply {
    pub json: Bytes,
}

opaque_message!(Admin, FrameKind::Admin, json);
opaque_message!(AdminReply, FrameKind::AdminResponse, json);

impl Admin {
    pub fn new(request: &AdminRequest) -> Admin {
        Admin {
            json: Bytes::from(serde_json::to_vec(request).expect("admin request serialises")),
        }
    }

    pub fn request(&self) -> Result<AdminRequest, String> {
        serde_json::from_slice(&self.json).map_err(|e| format!("bad admin request: {e}"))
    }
}

impl AdminReply {
    pub fn new(response: &AdminResponse) -> AdminReply {
        AdminReply {
            json: Bytes::from(serde_json::to_vec(response).expect("admin response serialises")),
        }
    }

    pub fn response(&self) -> Result<AdminResponse, String> {
        serde_json::from_slice(&self.json).map_err(|e| format!("bad admin response: {e}"))
    }
}

/// The node and the core a query id names (`ClusterShardMapper::next_query_id`).
pub fn query_home(qid: u64) -> (u64, usize) {
    (qid >> 48, ((qid >> 40) & 0xff) as usize)
}

struct Entry {
    /// The request's statements and which one this is: printed only when listed, so
    /// a statement costs no formatting on its way.
    statements: Rc<Vec<Statement>>,
    index: usize,
    database: Option<Rc<str>>,
    started: Instant,
    deadline: Deadline,
    killed: bool,
    /// Fires when the statement is killed; the statement races it.
    kill: Option<oneshot::Sender<()>>,
}

/// The statements one core coordinates right now. Bounded by what runs: an entry
/// lives exactly as long as its statement (its [`Registration`]).
#[derive(Default)]
pub struct QueryRegistry {
    running: RefCell<BTreeMap<u64, Entry>>,
}

/// A statement's place in the registry; dropping it removes the entry.
pub struct Registration {
    registry: Rc<QueryRegistry>,
    qid: u64,
    /// Resolves when the statement is killed.
    pub killed: oneshot::Receiver<()>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.running.borrow_mut().remove(&self.qid);
    }
}

impl QueryRegistry {
    /// Registers statement `index` of a request's `statements`, starting now.
    pub fn register(
        self: &Rc<Self>,
        qid: u64,
        statements: Rc<Vec<Statement>>,
        index: usize,
        database: Option<Rc<str>>,
        deadline: Deadline,
    ) -> Registration {
        let (tx, rx) = oneshot::channel();
        self.running.borrow_mut().insert(
            qid,
            Entry {
                statements,
                index,
                database,
                started: Instant::now(),
                deadline,
                killed: false,
                kill: Some(tx),
            },
        );
        Registration {
            registry: self.clone(),
            qid,
            killed: rx,
        }
    }

    /// The statements running here, oldest id first.
    pub fn list(&self) -> Vec<RunningQuery> {
        self.running
            .borrow()
            .iter()
            .map(|(qid, e)| RunningQuery {
                qid: *qid,
                query: e
                    .statements
                    .get(e.index)
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                database: e.database.as_deref().unwrap_or_default().to_string(),
                duration_ns: e.started.elapsed().as_nanos() as u64,
                status: if e.killed { "killed" } else { "running" }.into(),
            })
            .collect()
    }

    /// Kills a statement running here: its deadline is cancelled (its scans stop, here
    /// and on peers) and it ends with `query interrupted`. Whether it was running.
    pub fn kill(&self, qid: u64) -> bool {
        let mut running = self.running.borrow_mut();
        let Some(entry) = running.get_mut(&qid) else {
            return false;
        };
        entry.killed = true;
        entry.deadline.cancel();
        if let Some(tx) = entry.kill.take() {
            let _ = tx.send(());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_lives_as_long_as_its_statement_and_a_kill_reaches_it() {
        let registry = Rc::new(QueryRegistry::default());
        let deadline = Deadline::after(None);
        let statements = Rc::new(crate::influxql::parser::parse_query("SELECT 1 FROM m").unwrap());
        let mut reg = registry.register(7, statements, 0, Some("db".into()), deadline.clone());
        assert_eq!(registry.list()[0].status, "running");
        assert!(!registry.kill(8));
        assert!(registry.kill(7));
        assert!(deadline.is_cancelled());
        assert_eq!(registry.list()[0].status, "killed");
        assert!(matches!(reg.killed.try_recv(), Ok(Some(()))));
        drop(reg);
        assert!(registry.list().is_empty());
        assert!(!registry.kill(7));
    }

    #[test]
    fn requests_round_trip_and_garbage_is_an_error() {
        for r in [
            AdminRequest::Queries,
            AdminRequest::Kill { qid: u64::MAX },
            AdminRequest::DropShard { id: 3 },
        ] {
            assert_eq!(Admin::new(&r).request().unwrap(), r);
        }
        let garbage = Admin {
            json: Bytes::from_static(b"\xff{"),
        };
        assert!(garbage.request().is_err());
        assert_eq!(query_home((3 << 48) | (1 << 40) | 99), (3, 1));
    }
}
