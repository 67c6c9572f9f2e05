//! Ending a query's work wherever it runs.
//!
//! Every statement gets a [`Deadline`]: `query-timeout` from its start (or none), plus
//! a flag the coordinator raises when it gives up early. The deadline travels with each
//! [`ScanRequest`](super::scan::ScanRequest): in the same process as a shared atomic
//! (the scans on this node's other cores see the flag without a lock), across nodes as
//! the milliseconds left (`budget_ms`), from which the peer makes its own deadline. A
//! scan checks it between series and stops with [`ScanStop::Cancelled`].
//!
//! A peer also hears of a cancel directly: the coordinator sends a MapShard `Cancel`
//! naming the query id when it stops waiting (timeout, an error, `max-select-point`, or
//! the client going away), which raises the flag of the peer's running scans and drops
//! the pages it still holds for that query (`cluster::map_server`).

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The monotonic clock at its coarse resolution (a few ms), in ns: cheap enough to read
/// after every series a scan reads (no syscall, no hardware counter).
fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE exists on
    // every Linux glommio runs on, and cannot fail with a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// When a query's work must stop. Cloning shares it; `Deadline::default()` never ends.
#[derive(Clone, Debug, Default)]
pub struct Deadline(Option<Arc<Inner>>);

#[derive(Debug)]
struct Inner {
    /// [`coarse_now_ns`] at which the work must stop.
    at: Option<u64>,
    cancelled: AtomicBool,
}

impl Deadline {
    /// A deadline `timeout` from now (`None`: only an explicit cancel ends it).
    pub fn after(timeout: Option<Duration>) -> Deadline {
        Deadline(Some(Arc::new(Inner {
            at: timeout.map(|t| coarse_now_ns().saturating_add(t.as_nanos() as u64)),
            cancelled: AtomicBool::new(false),
        })))
    }

    /// Ends the work now (every clone sees it).
    pub fn cancel(&self) {
        if let Some(inner) = &self.0 {
            inner.cancelled.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the work must stop: cancelled, or past the deadline.
    pub fn is_over(&self) -> bool {
        self.is_over_at(coarse_now_ns())
    }

    fn is_over_at(&self, now_ns: u64) -> bool {
        self.0.as_ref().is_some_and(|inner| {
            inner.cancelled.load(Ordering::Relaxed) || inner.at.is_some_and(|at| now_ns >= at)
        })
    }

    /// Whether [`Self::cancel`] was called (not merely past the deadline).
    pub fn is_cancelled(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|inner| inner.cancelled.load(Ordering::Relaxed))
    }

    /// Milliseconds left (at least 1 while not over), `None` without a time limit: what
    /// a request to another node carries.
    pub fn remaining_ms(&self) -> Option<u64> {
        let at = self.0.as_ref()?.at?;
        Some((at.saturating_sub(coarse_now_ns()) / 1_000_000).max(1))
    }
}

/// A scan is not part of what a request asks: two requests that differ only in their
/// deadline ask for the same data.
impl PartialEq for Deadline {
    fn eq(&self, _: &Deadline) -> bool {
        true
    }
}

/// Why a scan stopped before reading everything it was asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ScanStop {
    /// The query's deadline passed or the coordinator cancelled it.
    #[error("query-timeout limit exceeded")]
    Cancelled,
    /// More values than `max-select-point` (InfluxDB's wording, typo included).
    #[error("max-select-point limit exceeed: ({points}/{limit})")]
    TooManyPoints { points: usize, limit: usize },
}

/// Counts a scan's values against its deadline and point limit, series by series, and
/// cuts the scan into time slices so its core can run other work in between (writes,
/// cluster frames, a cancel).
pub struct ScanBudget<'a> {
    deadline: &'a Deadline,
    max_points: usize,
    points: usize,
    stopped: Option<ScanStop>,
    /// [`coarse_now_ns`] at which the current slice ends.
    slice_ends: u64,
}

/// How long a scan runs before it lets its core do other work.
pub const SCAN_SLICE: Duration = Duration::from_micros(crate::limits::SCAN_SLICE_US);

/// How long a scan waits between slices (not zero: see the limit).
pub const SCAN_PAUSE: Duration = Duration::from_micros(crate::limits::SCAN_PAUSE_US);

impl<'a> ScanBudget<'a> {
    pub fn new(deadline: &'a Deadline, max_points: usize) -> ScanBudget<'a> {
        ScanBudget {
            deadline,
            max_points,
            points: 0,
            stopped: None,
            slice_ends: u64::MAX,
        }
    }

    /// Starts a slice of [`SCAN_SLICE`]: [`Self::spend`] pauses the scan at its end.
    pub fn start_slice(&mut self) {
        self.slice_ends = coarse_now_ns().saturating_add(SCAN_SLICE.as_nanos() as u64);
    }

    /// Adds the values one series gave; false once the scan must stop ([`Self::stopped`]
    /// says why) or pause (the slice is over; `stopped` is `None`).
    pub fn spend(&mut self, values: usize) -> bool {
        if self.stopped.is_some() {
            return false;
        }
        self.points += values;
        if self.max_points > 0 && self.points > self.max_points {
            self.stopped = Some(ScanStop::TooManyPoints {
                points: self.points,
                limit: self.max_points,
            });
            return false;
        }
        let now = coarse_now_ns();
        if self.deadline.is_over_at(now) {
            self.stopped = Some(ScanStop::Cancelled);
            return false;
        }
        now < self.slice_ends
    }

    /// Checks the deadline now (before a scan starts).
    pub fn check(&mut self) -> bool {
        if self.stopped.is_none() && self.deadline.is_over() {
            self.stopped = Some(ScanStop::Cancelled);
        }
        self.stopped.is_none()
    }

    /// Why the scan stopped, if it did.
    pub fn stopped(&self) -> Option<&ScanStop> {
        self.stopped.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_deadline_never_ends_and_cannot_be_cancelled() {
        let d = Deadline::default();
        d.cancel();
        assert!(!d.is_over());
        assert_eq!(d.remaining_ms(), None);
    }

    #[test]
    fn cancel_is_seen_by_every_clone() {
        let d = Deadline::after(None);
        let other = d.clone();
        assert!(!other.is_over());
        d.cancel();
        assert!(other.is_over());
        assert!(other.is_cancelled());
    }

    #[test]
    fn a_past_deadline_is_over_with_a_millisecond_left_to_report() {
        let d = Deadline::after(Some(Duration::ZERO));
        assert!(d.is_over());
        assert!(!d.is_cancelled());
        assert_eq!(d.remaining_ms(), Some(1));
        let later = Deadline::after(Some(Duration::from_secs(60)));
        assert!(later.remaining_ms().unwrap() > 59_000);
    }

    #[test]
    fn the_budget_stops_at_the_point_limit_with_influxdbs_message() {
        let d = Deadline::default();
        let mut b = ScanBudget::new(&d, 10);
        assert!(b.spend(6));
        assert!(!b.spend(5));
        assert_eq!(
            b.stopped().unwrap().to_string(),
            "max-select-point limit exceeed: (11/10)"
        );
        assert!(!b.spend(0), "a stopped budget stays stopped");
    }

    #[test]
    fn the_budget_stops_on_cancel_and_on_the_clock() {
        let d = Deadline::after(None);
        let mut b = ScanBudget::new(&d, 0);
        assert!(b.spend(1));
        d.cancel();
        assert!(!b.spend(1));
        assert_eq!(b.stopped(), Some(&ScanStop::Cancelled));

        let past = Deadline::after(Some(Duration::ZERO));
        let mut b = ScanBudget::new(&past, 0);
        assert!(!b.check());
        let mut b = ScanBudget::new(&past, 0);
        assert!(!b.spend(0));
        let later = Deadline::after(Some(Duration::from_secs(60)));
        let mut b = ScanBudget::new(&later, 0);
        assert!((0..1000).all(|_| b.spend(1)));
    }

    #[test]
    fn a_slice_pauses_without_stopping() {
        let d = Deadline::default();
        let mut b = ScanBudget::new(&d, 0);
        b.start_slice();
        assert!(b.spend(1), "a fresh slice goes on");
        b.slice_ends = 0;
        assert!(!b.spend(1));
        assert_eq!(b.stopped(), None, "paused, not stopped");
        b.start_slice();
        assert!(b.spend(1));
    }
}
