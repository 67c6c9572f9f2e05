//! Small helpers every layer shares: time, hashing, the shutdown flag and the boxed
//! future of a core-local dependency. No imports from the rest of the crate.

pub mod hash;
pub mod shutdown;
pub mod time;

use std::future::Future;
use std::pin::Pin;

/// A future of a core-local dependency (a trait object's async method): runs on one
/// core, so it is not `Send`.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;
