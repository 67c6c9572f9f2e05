//! The node's shutdown state, shared by every core: the flag the signal thread sets,
//! and the barrier the cores meet at before they close their files.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Shared shutdown state: the flag the signal thread sets, and the barrier counter.
#[derive(Default)]
pub struct Shutdown {
    requested: AtomicBool,
    drained_cores: AtomicUsize,
}

impl Shutdown {
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown is requested (polls; the flag is set from a plain thread).
    pub async fn wait(&self) {
        while !self.is_requested() {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sleeps `period`, or less if shutdown comes first: whether it did (a service's
    /// periodic loop stops then).
    pub async fn sleep(&self, period: Duration) -> bool {
        futures_lite::future::or(
            async {
                glommio::timer::sleep(period).await;
                false
            },
            async {
                self.wait().await;
                true
            },
        )
        .await
    }

    /// Marks this core drained and waits until every core is.
    pub async fn barrier(&self, cores: usize) {
        self.drained_cores.fetch_add(1, Ordering::SeqCst);
        while self.drained_cores.load(Ordering::SeqCst) < cores {
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
    }
}
