//! The query side of the cluster (ShardMapper): where a query's scans run.
//!
//! A scan or schema request covers every shard of the database in the time range. On a
//! single node every shard is local and each core answers for its own shards over the
//! mesh.

use crate::node::CoreContext;
use crate::query::scan::{ScanRequest, SchemaRequest, ShardScan, ShardSchema};
use crate::query::QueryError;
use std::rc::Rc;

/// Scans every shard the request covers.
pub async fn scan_cluster(
    ctx: &Rc<CoreContext>,
    r: &ScanRequest,
) -> Result<Vec<ShardScan>, QueryError> {
    Ok(ctx.scan_node(r).await?)
}

/// The schema of every shard the request covers.
pub async fn schema_cluster(
    ctx: &Rc<CoreContext>,
    r: &SchemaRequest,
) -> Result<Vec<ShardSchema>, QueryError> {
    Ok(ctx.schema_node(r).await?)
}
