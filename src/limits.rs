//! Built-in bounds that are not configuration: each with its unit in the name and the
//! reason for its value. Configurable bounds live in `config` (`max-body-size-bytes`,
//! `max-connections-per-core`, ...).
//!
//! Recursion: the InfluxQL parser, planner, evaluator and renderer walk expression
//! trees recursively. Instead of turning every walker iterative, the parser refuses a
//! tree deeper than [`MAX_EXPR_DEPTH`] (and subqueries nested deeper than
//! [`MAX_SUBQUERY_DEPTH`]), and every core runs on a stack of [`CORE_STACK_BYTES`],
//! sized so that the deepest accepted statement fits with room to spare (measured:
//! see the constants). A query over the bounds gets a parse error, never a crash.

/// Stack of each core's executor thread. Only the pages a deep statement touches are
/// committed; the rest is address space. Measured on the release build (x86_64): the
/// deepest expression the parser accepts runs in under a quarter of it, through every
/// walker (parse, plan, evaluate, render, drop), alongside the deepest subquery chain.
pub const CORE_STACK_BYTES: usize = 64 << 20;

/// Deepest expression tree the parser accepts: nested parentheses, function calls,
/// unary minus signs and chains of binary operators (`a OR b OR c ...` is a chain as
/// deep as it is long) all count one level each. InfluxDB has no such bound (Go stacks
/// grow); 10000 covers machine-generated conditions of thousands of terms.
pub const MAX_EXPR_DEPTH: usize = 10_000;

/// Deepest chain of subqueries (`SELECT ... FROM (SELECT ... FROM (...))`).
pub const MAX_SUBQUERY_DEPTH: usize = 1_000;

// ---- Regexes (influxql::regex) ----

/// Longest regex literal accepted (InfluxDB relies on Go's limits, which let a 1 MB
/// pattern through; 64 KiB still holds an alternation of thousands of host names).
pub const MAX_REGEX_BYTES: usize = 64 << 10;

/// Most Unicode classes (`\pL`, `\p{Greek}`) in one pattern: each expands to
/// hundreds of ranges before the automaton is built (`\w`, `\d`, `\s` are ASCII, as
/// in Go, and cheap).
pub const MAX_REGEX_CLASSES: usize = 256;

/// Size limit of a compiled program (the regex crate's `size_limit`): past it the
/// compile fails instead of growing. Measured: 8 MiB bounds a failing compile to ~40 ms.
pub const REGEX_PROGRAM_BYTES: usize = 8 << 20;

/// A pattern is compiled on the core when it is at most this long and has no Perl or
/// Unicode class and no counted repetition (well under a millisecond); anything else
/// goes to the blocking pool. Measured: `(.{1000}){1000}`, 15 bytes, takes ~60 ms to
/// fail the program limit; `.{5000}` ~25 ms to succeed.
pub const CHEAP_REGEX_BYTES: usize = 64;

// ---- Query engine (query) ----

/// Most `GROUP BY time()` windows a statement builds when `max-select-buckets` is
/// unlimited and the range is open-ended (up to now); the answer's row limit marks it
/// partial long before.
pub const MAX_TIME_WINDOWS: usize = 1_000_000;

// ---- Storage (tsdb) ----

/// A WAL record longer than this is treated as corruption (a body is at most a few
/// hundred MB).
pub const WAL_MAX_RECORD_BYTES: u32 = 1 << 30;

/// Largest single WAL write submitted to the ring: glommio 0.9 has trouble with very
/// large buffered I/O (a hang seen on reads over ~6 MB), so the pending bytes are kept
/// in chunks of about this size, each written with its own `write_at`, then one
/// fdatasync.
pub const WAL_WRITE_CHUNK_BYTES: usize = 4 << 20;

/// After a failed WAL write, the first probe to resume waits this long; each failed
/// probe doubles the wait, up to [`WAL_RESUME_PROBE_MAX_MS`].
pub const WAL_RESUME_PROBE_MIN_MS: u64 = 50;

/// The longest wait between two probes of a failed WAL (so writes resume at most this
/// long after the disk has room again).
pub const WAL_RESUME_PROBE_MAX_MS: u64 = 500;

/// How long a scan runs before it lets its core do other work.
pub const SCAN_SLICE_US: u64 = 2_000;

/// How long a scan waits between slices. Not zero: the executor must find nothing due
/// and enter the kernel to wait, which is when io_uring delivers socket completions (a
/// cancel frame, a write); with a timer already due at that check (1 µs), the frames
/// of a peer were only read after the whole scan. 50 µs per 2 ms slice is 2.5%.
pub const SCAN_PAUSE_US: u64 = 50;

/// How often a core looks for columns that writes left out of time order.
pub const TIDY_INTERVAL_US: u64 = 100_000;

/// How often a core's flush task looks at its heads' sizes (and publishes them for
/// the cache-full check): a 4 M values/s core fills ~6 MB of head between looks.
pub const FLUSH_CHECK_INTERVAL_MS: u64 = 100;

/// The DMA buffer a data file is written through (two in flight).
pub const DATA_FILE_WRITE_BUFFER_BYTES: usize = 128 * 1024;

/// How long the tidy task holds the core at a time.
pub const TIDY_SLICE_US: u64 = 1_000;

// ---- Transport (net) ----

/// The default bound on one frame's payload once a connection is authenticated.
pub const FRAME_MAX_PAYLOAD_BYTES: u32 = 64 << 20;

/// The bound on one frame's payload before the handshake completes.
pub const HANDSHAKE_MAX_PAYLOAD_BYTES: u32 = 4096;

/// Bytes a connection reads from its socket at a time.
pub const READ_CHUNK_BYTES: usize = 64 << 10;

/// A connection's flusher keeps its spare buffer between writes up to this size; a
/// bigger one (after a burst of large frames) is freed.
pub const SPARE_BUFFER_MAX_BYTES: usize = 4 << 20;

// ---- Cluster services (cluster, hh) ----

/// The largest `max-inflight-requests-per-connection`: each request in flight may hold
/// a frame of up to `max-frame-bytes` in the connection's buffers.
pub const MAX_INFLIGHT_REQUESTS_PER_CONNECTION: usize = 1024;

/// The largest `replay-max-inflight-records`: hinted-handoff records one queue may
/// have in flight.
pub const MAX_REPLAY_INFLIGHT_RECORDS: usize = 16;

/// How long a new cluster connection may take to prove the shared secret.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// Cluster connections in their handshake at once per core. At the bound a new
/// connection closes the oldest one still in its handshake, so connections that never
/// prove the secret cannot lock the peers out (a peer's handshake takes a few round
/// trips).
pub const MAX_PENDING_HANDSHAKES: usize = 64;

/// Failed dials in a row before requests stop dialling a peer for a while (a node that
/// is starting, or a single refused connect, does not trigger it).
pub const DIAL_FAILURES_BEFORE_BACKOFF: u32 = 3;

/// First and largest wait between dials once backing off.
pub const DIAL_BACKOFF_MIN_MS: u64 = 100;
pub const DIAL_BACKOFF_MAX_MS: u64 = 5_000;

/// How long a peer found hung stays suspect (queries ask it last, or not at all when
/// its replicas cover it) unless it answers something first; then it is tried as any
/// other peer again.
pub const SUSPECT_FOR_MS: u64 = 10_000;

/// Held MapShard scans per core; at the limit the least recently read one is dropped
/// (its coordinator's next page is served by scanning again).
pub const MAX_HELD_SCANS: usize = 16;

/// A held scan not read for this long is dropped.
pub const HELD_SCAN_IDLE_MS: u64 = 30_000;

/// Cancels waiting to be sent per core; at the limit a cancel is dropped (the peer's
/// own deadline and the held-scan expiry still end its work).
pub const MAX_QUEUED_CANCELS: usize = 256;

/// How long a cancel may take to reach a peer before the sender moves on.
pub const CANCEL_TIMEOUT_MS: u64 = 1_000;

/// Most shard groups a cluster scan plans owners for; a wider range asks the peers in
/// turn.
pub const MAX_PLANNED_GROUPS: i64 = 64;

/// How long SHOW QUERIES waits for a peer's list: a stopped or partitioned peer is
/// left out of the answer rather than holding it for the dial timeout.
pub const SHOW_QUERIES_PEER_WAIT_MS: u64 = 1_000;

/// How often a waiting NodeProcessor pings its destination.
pub const HH_PING_EVERY_MS: u64 = 250;

/// A hinted-handoff record `length` above this is corruption, not data: the largest
/// HTTP body a node accepts is far smaller, and it keeps `8 + length` clear of `u32`
/// overflow.
pub const HH_MAX_PAYLOAD_BYTES: u32 = 1 << 30;

/// The encode buffer of a hinted-handoff segment's append is given back to the
/// allocator when a record left it larger than this, so one huge record does not pin
/// its size.
pub const HH_KEEP_SCRATCH_BYTES: usize = 8 << 20;

// ---- Front end (http) and metrics ----

/// How long a new connection may take to send its first bytes before it is served
/// where it is, unsteered.
pub const STEER_WAIT_MS: u64 = 200;

/// Most executor threads (`cores`) a node runs: each takes a cluster port
/// (`bind` port + core) and the handshake carries the count in a `u16`.
pub const MAX_CORES: usize = 1024;

/// Most bytes a request body reserves before they arrive (a declared length beyond it
/// is grown into as bytes come, so a client cannot make the server reserve what it
/// never sends).
pub const BODY_RESERVE_MAX_BYTES: usize = 1 << 20;

/// Locked memory each core needs beyond its io_uring buffers (`io-memory-bytes`): the
/// rings themselves.
pub const RING_MEMLOCK_BYTES: u64 = 1 << 20;

/// File descriptors kept beyond the client connections' (`max-connections-per-core` x
/// cores) when the limit is raised: shard and queue files, cluster connections, the
/// mesh.
pub const SPARE_FILE_DESCRIPTORS: u64 = 1024;

/// Largest latency a histogram holds (1 hour); larger values are clamped to it (the
/// exact sum still counts them whole).
pub const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Users whose last good password each core remembers (a salted SHA-256 beside the
/// bcrypt hash it matched); past it one is forgotten and checks with bcrypt again.
pub const AUTH_CACHE_USERS_PER_CORE: usize = 4096;

/// (source address, user) pairs with recent login failures each core tracks for the
/// brute-force back-off; past it expired pairs go, then the one failed longest ago.
pub const AUTH_FAILURE_PAIRS_PER_CORE: usize = 16384;

// ---- Relations between them ----

const _: () = {
    assert!(MAX_CORES <= u16::MAX as usize);
    assert!(MAX_SUBQUERY_DEPTH <= MAX_EXPR_DEPTH);
    assert!(CHEAP_REGEX_BYTES < MAX_REGEX_BYTES);
    assert!(WAL_WRITE_CHUNK_BYTES < WAL_MAX_RECORD_BYTES as usize);
    assert!(WAL_RESUME_PROBE_MIN_MS < WAL_RESUME_PROBE_MAX_MS);
    // A scan pauses far less than it runs, and the tidy task waits longer than a slice.
    assert!(SCAN_PAUSE_US * 10 <= SCAN_SLICE_US);
    assert!(TIDY_SLICE_US < TIDY_INTERVAL_US);
    assert!(HANDSHAKE_MAX_PAYLOAD_BYTES < FRAME_MAX_PAYLOAD_BYTES);
    assert!(READ_CHUNK_BYTES <= SPARE_BUFFER_MAX_BYTES);
    assert!(DIAL_BACKOFF_MIN_MS < DIAL_BACKOFF_MAX_MS);
    // A hung peer is still suspect when the next dial after the longest back-off fails.
    assert!(DIAL_BACKOFF_MAX_MS < SUSPECT_FOR_MS);
    // A cancel reaches the peer (or is given up on) before the scan it stops expires.
    assert!(CANCEL_TIMEOUT_MS < HELD_SCAN_IDLE_MS);
    // A NodeProcessor pings more often than a peer stays suspect.
    assert!(HH_PING_EVERY_MS < SUSPECT_FOR_MS);
    assert!(STEER_WAIT_MS < HANDSHAKE_TIMEOUT_MS);
    // Every latency a timeout can end (the longest is a query's, whose default is
    // unlimited) is at least the handshake timeout.
    assert!(HANDSHAKE_TIMEOUT_MS * 1000 < LATENCY_MAX_US);
};
