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

/// This machine's host name (SHOW DIAGNOSTICS, the monitor's `hostname` tag).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname writes at most that many
    // bytes and we read up to the first NUL only.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
