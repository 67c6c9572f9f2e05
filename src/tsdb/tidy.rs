//! The tidy task of a core: sorts, in the background and in small slices, the columns
//! that writes left out of time order.

use crate::base::shutdown::Shutdown;
use crate::tsdb::store::Store;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a core looks for columns that writes left out of time order.
const TIDY_INTERVAL: Duration = Duration::from_micros(crate::limits::TIDY_INTERVAL_US);

/// How long the tidy task holds the core at a time.
const TIDY_SLICE: Duration = Duration::from_micros(crate::limits::TIDY_SLICE_US);

/// Sorts the columns of this core's shards that writes left out of time order (batches
/// of one series applied out of turn, as parallel writers cause), off the query path,
/// as InfluxDB sorts its cache when it snapshots; otherwise the first query to touch
/// such a series pays for the sort. It waits for a quiet spell (no value written to the
/// core's shards for a whole [`TIDY_INTERVAL`]), so a column is not sorted again and
/// again while a load is still adding to it, and works in slices of [`TIDY_SLICE`]
/// with a pause between them ([`crate::tsdb::read::cancel::SCAN_PAUSE`]), so a query or
/// write that arrives waits at most one slice.
pub async fn run(store: Rc<RefCell<Store>>, shutdown: Arc<Shutdown>) {
    use crate::tsdb::read::cancel::SCAN_PAUSE;
    let written = |store: &RefCell<Store>| -> u64 {
        store.borrow().shards().map(|s| s.values_written()).sum()
    };
    let mut seen = written(&store);
    while !shutdown.is_requested() {
        glommio::timer::sleep(TIDY_INTERVAL).await;
        let now = written(&store);
        if now != seen {
            seen = now;
            continue;
        }
        let shards = store.borrow().keys();
        'shards: for key in shards {
            loop {
                let slice_ends = Instant::now() + TIDY_SLICE;
                let more = match store.borrow_mut().shard_mut(key) {
                    Some(shard) => shard.tidy(|_| Instant::now() < slice_ends),
                    None => false,
                };
                if !more || shutdown.is_requested() {
                    break;
                }
                glommio::timer::sleep(SCAN_PAUSE).await;
                // Writes resumed: leave the rest for the next quiet spell.
                if written(&store) != seen {
                    break 'shards;
                }
            }
        }
    }
}
