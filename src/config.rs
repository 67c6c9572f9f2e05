//! Node configuration: a TOML file (`--config`), overridden by command-line flags.
//!
//! Every key is kebab-case with its unit in the name; unknown keys are errors, so a typo
//! never silently falls back to a default. `shardcore config` prints [`DEFAULT_CONFIG_TOML`],
//! the full default configuration with every key documented; a unit test keeps it equal
//! to [`Config::default`].

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Errors loading or validating the configuration. Each names the key at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Where databases, shards and WALs live.
    pub data_dir: PathBuf,
    /// Executor threads, one pinned per CPU; 0 means every online CPU.
    pub cores: usize,
    /// tracing filter, e.g. "info" or "shardcore=debug".
    pub log_level: String,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub runtime: RuntimeConfig,
    pub cluster: ClusterConfig,
    pub hinted_handoff: HintedHandoffConfig,
    pub query: QueryConfig,
    pub retention: RetentionConfig,
    pub continuous_queries: ContinuousQueriesConfig,
    pub monitor: MonitorConfig,
}

/// `[monitor]`: InfluxDB's self-monitoring store: every `store-interval-ms` each node
/// writes its statistics (SHOW STATS' groups) into `store-database`, policy `monitor`
/// (7 days), creating both when missing.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MonitorConfig {
    pub store_enabled: bool,
    pub store_database: String,
    pub store_interval_ms: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            store_enabled: true,
            store_database: "_internal".into(),
            store_interval_ms: 10_000,
        }
    }
}

/// `[continuous-queries]`: InfluxDB's `[continuous_queries]` service, its keys in our
/// kebab-case with units.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContinuousQueriesConfig {
    pub enabled: bool,
    /// Log every run (its time range and how long it took).
    pub log_enabled: bool,
    /// How often the service checks whether a CQ is due (InfluxDB's run-interval, 1s).
    pub run_interval_ms: u64,
}

impl Default for ContinuousQueriesConfig {
    fn default() -> Self {
        ContinuousQueriesConfig {
            enabled: true,
            log_enabled: true,
            run_interval_ms: 1000,
        }
    }
}

/// `[retention]`: dropping shard groups older than their policy keeps (InfluxDB's
/// `[retention]` service, its keys in our kebab-case with units).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetentionConfig {
    pub enabled: bool,
    pub check_interval_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            check_interval_ms: 30 * 60 * 1000,
        }
    }
}

/// `[query]`: the bounds of one InfluxQL statement (InfluxDB's `[coordinator]` limits).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct QueryConfig {
    pub max_select_point: usize,
    pub max_select_series: usize,
    pub max_select_buckets: usize,
    pub max_row_limit: usize,
    pub query_timeout_ms: u64,
    /// Longest query text (`q`) accepted; 0 = no limit other than max-body-size-bytes.
    pub max_query_bytes: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            max_select_point: 0,
            max_select_series: 0,
            max_select_buckets: 0,
            max_row_limit: 0,
            query_timeout_ms: 0,
            max_query_bytes: 1 << 20,
        }
    }
}

pub use crate::limits::MAX_REPLAY_INFLIGHT_RECORDS;

/// `[hinted-handoff]`: queues of writes a remote owner could not take (issue 4).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HintedHandoffConfig {
    pub max_size_bytes: u64,
    pub max_age_seconds: u64,
    pub segment_size_bytes: u64,
    pub retry_interval_ms: u64,
    pub retry_max_interval_ms: u64,
    pub retry_rate_limit_bytes_per_second: u64,
    pub purge_interval_seconds: u64,
    pub replay_max_inflight_records: usize,
}

impl Default for HintedHandoffConfig {
    fn default() -> Self {
        HintedHandoffConfig {
            max_size_bytes: 10 << 30,
            max_age_seconds: 168 * 3600,
            segment_size_bytes: 10 << 20,
            retry_interval_ms: 1_000,
            retry_max_interval_ms: 10_000,
            retry_rate_limit_bytes_per_second: 50_000_000,
            purge_interval_seconds: 60,
            replay_max_inflight_records: 4,
        }
    }
}

/// `[cluster]`: this node's identity and its peers. With no peers the node is a
/// single-node cluster of itself.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterConfig {
    pub node_id: u64,
    /// Cluster port base: core k of this node listens on this port + k.
    pub bind: String,
    /// Address peers use to reach this node (defaults to `bind`).
    pub advertise: String,
    /// Every other node, as "id@host:port" (port = that node's cluster port base).
    pub peers: Vec<String>,
    pub shared_secret: String,
    pub shared_secret_file: String,
    pub write_timeout_ms: u64,
    pub dial_timeout_ms: u64,
    pub pool_max_connections: usize,
    pub pool_wait_timeout_ms: u64,
    /// Requests one node-to-node connection carries at once (both sides enforce it).
    pub max_inflight_requests_per_connection: usize,
    pub max_frame_bytes: u64,
    /// About how many bytes of series one MapShard answer page carries (the rest of a
    /// scan waits on the peer for the next request).
    pub map_page_bytes: u64,
    pub meta_sync_interval_ms: u64,
    /// Node-to-node connections use mutual TLS (the shared-secret handshake runs
    /// inside it as without).
    pub tls_enabled: bool,
    /// PEM: this node's certificate chain (and key when tls-private-key is empty).
    pub tls_certificate: String,
    /// PEM: this node's private key; empty: in tls-certificate.
    pub tls_private_key: String,
    /// PEM: the CA that signed every node's certificate.
    pub tls_ca_certificate: String,
    /// The name every node's certificate carries; empty: each peer's address (IP).
    pub tls_server_name: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: 1,
            bind: "127.0.0.1:8088".into(),
            advertise: String::new(),
            peers: Vec::new(),
            shared_secret: String::new(),
            shared_secret_file: String::new(),
            write_timeout_ms: 10_000,
            dial_timeout_ms: 2_000,
            pool_max_connections: 3,
            pool_wait_timeout_ms: 5_000,
            max_inflight_requests_per_connection: 16,
            max_frame_bytes: 64 * 1024 * 1024,
            map_page_bytes: 4 * 1024 * 1024,
            meta_sync_interval_ms: 10_000,
            tls_enabled: false,
            tls_certificate: String::new(),
            tls_private_key: String::new(),
            tls_ca_certificate: String::new(),
            tls_server_name: String::new(),
        }
    }
}

pub use crate::limits::MAX_INFLIGHT_REQUESTS_PER_CONNECTION;

/// A peer from `[cluster] peers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node_id: u64,
    pub address: SocketAddr,
}

impl ClusterConfig {
    /// The configured peers (without this node).
    pub fn parsed_peers(&self) -> Result<Vec<Peer>, ConfigError> {
        let mut peers = Vec::new();
        for p in &self.peers {
            let bad = |why: &str| ConfigError::Invalid {
                key: "cluster.peers",
                message: format!("`{p}`: {why}; expected \"id@host:port\""),
            };
            let (id, addr) = p.split_once('@').ok_or_else(|| bad("no `@`"))?;
            let node_id: u64 = id.parse().map_err(|_| bad("the id is not a number"))?;
            let address = std::net::ToSocketAddrs::to_socket_addrs(addr)
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| bad("the address does not resolve"))?;
            if node_id == self.node_id {
                return Err(bad("a peer has this node's own node-id"));
            }
            if peers.iter().any(|q: &Peer| q.node_id == node_id) {
                return Err(bad("node-id listed twice"));
            }
            peers.push(Peer { node_id, address });
        }
        Ok(peers)
    }

    /// The shared secret, from the file if one is named.
    pub fn secret(&self) -> Result<Vec<u8>, ConfigError> {
        if !self.shared_secret_file.is_empty() {
            let text = std::fs::read_to_string(&self.shared_secret_file).map_err(|e| {
                ConfigError::Invalid {
                    key: "cluster.shared-secret-file",
                    message: format!("cannot read {}: {e}", self.shared_secret_file),
                }
            })?;
            return Ok(text.trim_end().as_bytes().to_vec());
        }
        Ok(self.shared_secret.as_bytes().to_vec())
    }

    pub fn bind_addr(&self) -> SocketAddr {
        self.bind.parse().expect("validated in Config::validate")
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpConfig {
    pub bind_address: String,
    pub max_body_size_bytes: u64,
    pub max_concurrent_write_requests_per_core: usize,
    pub max_connections_per_core: usize,
    pub retry_after_seconds: u64,
    /// A request head (request line and headers) must arrive within this, counted from
    /// the connection's start or the request's first byte; else the connection closes.
    pub header_read_timeout_ms: u64,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// A request body must arrive whole within this, counted from the request head;
    /// else the request is answered 408 and the connection closed.
    pub body_read_timeout_ms: u64,
    /// Bytes of request bodies a core holds while they arrive; a body that would pass
    /// it gets 503 + Retry-After.
    pub max_pending_body_bytes_per_core: u64,
    /// A gzip request body may decode to at most this many bytes (413 past it).
    pub max_decompressed_body_bytes: u64,
    /// Users and privileges are enforced (InfluxDB's key).
    pub auth_enabled: bool,
    /// With auth-enabled, `/ping`, `/health` need a user too (InfluxDB 1.7.9+).
    pub ping_auth_enabled: bool,
    /// With auth-enabled, `/debug/*` and `/metrics` need an admin (InfluxDB 1.7.9+'s
    /// pprof-auth-enabled; `/metrics` is ours with it).
    pub pprof_auth_enabled: bool,
    /// Failed logins of one (source address, user) allowed before back-off starts.
    pub auth_failures_before_delay: u32,
    /// The first back-off wait; it doubles per further failure.
    pub auth_failure_delay_ms: u64,
    /// The longest back-off wait; an attempt that would wait longer is refused
    /// unchecked.
    pub auth_failure_delay_max_ms: u64,
    /// A pair with no failure for this long is forgotten.
    pub auth_failure_memory_ms: u64,
    /// The HTTP API speaks TLS only (InfluxDB's key).
    pub https_enabled: bool,
    /// PEM file of the certificate chain, leaf first (and the key when
    /// https-private-key is empty).
    pub https_certificate: String,
    /// PEM file of the private key; empty: in https-certificate.
    pub https_private_key: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StorageConfig {
    pub wal_fsync_delay_ms: u64,
    pub wal_segment_size_bytes: u64,
    pub wal_max_pending_bytes: u64,
    pub max_points_per_shard_batch: usize,
    /// A core's heads are flushed into data files past this many bytes.
    pub cache_snapshot_bytes: u64,
    /// A partition with no write for this long is flushed whatever its size.
    pub cache_snapshot_write_cold_ms: u64,
    /// A partition whose WAL on disk passes this many bytes is flushed (0: never).
    pub cache_snapshot_wal_bytes: u64,
    /// Past this many head bytes on a core, writes get 503 until a flush frees room
    /// (0: no limit).
    pub cache_max_bytes: u64,
    /// Bytes per second a core's compactions write at most.
    pub compaction_throughput_bytes_per_second: u64,
    /// A partition with no write for this long has all its files rewritten into one.
    pub compact_full_write_cold_ms: u64,
    /// Decoded data file blocks kept per core for queries.
    pub block_cache_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuntimeConfig {
    pub mesh_channel_capacity: usize,
    pub io_memory_bytes: usize,
    pub ring_depth: usize,
    pub shutdown_timeout_ms: u64,
    /// Pin core k's executor to CPU k (when there are that many CPUs).
    pub pin_cores: bool,
    /// An idle executor spins this long before it sleeps (0: sleeps at once).
    pub spin_before_park_us: u64,
}

/// One group of SHOW DIAGNOSTICS: its name and (column, value) pairs.
pub type DiagnosticsGroup = (&'static str, Vec<(&'static str, serde_json::Value)>);

impl Config {
    /// The configuration groups of SHOW DIAGNOSTICS (InfluxDB's `config-*` groups, our
    /// sections and keys; secrets and key files are never shown).
    pub fn diagnostics(&self) -> Vec<DiagnosticsGroup> {
        use serde_json::json;
        vec![
            (
                "config",
                vec![
                    ("cores", json!(self.cores)),
                    ("data-dir", json!(self.data_dir.display().to_string())),
                ],
            ),
            (
                "config-cluster",
                vec![
                    ("bind", json!(self.cluster.bind)),
                    ("node-id", json!(self.cluster.node_id)),
                    ("peers", json!(self.cluster.peers.len())),
                    ("tls-enabled", json!(self.cluster.tls_enabled)),
                    ("write-timeout-ms", json!(self.cluster.write_timeout_ms)),
                ],
            ),
            (
                "config-cqs",
                vec![
                    ("enabled", json!(self.continuous_queries.enabled)),
                    ("log-enabled", json!(self.continuous_queries.log_enabled)),
                    (
                        "run-interval-ms",
                        json!(self.continuous_queries.run_interval_ms),
                    ),
                ],
            ),
            (
                "config-httpd",
                vec![
                    ("auth-enabled", json!(self.http.auth_enabled)),
                    ("bind-address", json!(self.http.bind_address)),
                    ("https-enabled", json!(self.http.https_enabled)),
                    ("max-body-size-bytes", json!(self.http.max_body_size_bytes)),
                    ("max-row-limit", json!(self.query.max_row_limit)),
                ],
            ),
            (
                "config-monitor",
                vec![
                    ("store-database", json!(self.monitor.store_database)),
                    ("store-enabled", json!(self.monitor.store_enabled)),
                    ("store-interval-ms", json!(self.monitor.store_interval_ms)),
                ],
            ),
            (
                "config-query",
                vec![
                    ("max-query-bytes", json!(self.query.max_query_bytes)),
                    ("max-select-buckets", json!(self.query.max_select_buckets)),
                    ("max-select-point", json!(self.query.max_select_point)),
                    ("max-select-series", json!(self.query.max_select_series)),
                    ("query-timeout-ms", json!(self.query.query_timeout_ms)),
                ],
            ),
            (
                "config-retention",
                vec![
                    ("check-interval-ms", json!(self.retention.check_interval_ms)),
                    ("enabled", json!(self.retention.enabled)),
                ],
            ),
            (
                "config-storage",
                vec![
                    ("cache-max-bytes", json!(self.storage.cache_max_bytes)),
                    (
                        "cache-snapshot-bytes",
                        json!(self.storage.cache_snapshot_bytes),
                    ),
                    ("wal-fsync-delay-ms", json!(self.storage.wal_fsync_delay_ms)),
                ],
            ),
        ]
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./shardcore-data"),
            cores: 0,
            log_level: "info".into(),
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            runtime: RuntimeConfig::default(),
            cluster: ClusterConfig::default(),
            hinted_handoff: HintedHandoffConfig::default(),
            query: QueryConfig::default(),
            retention: RetentionConfig::default(),
            continuous_queries: ContinuousQueriesConfig::default(),
            monitor: MonitorConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind_address: "127.0.0.1:8086".into(),
            max_body_size_bytes: 25_000_000,
            max_concurrent_write_requests_per_core: 128,
            max_connections_per_core: 4096,
            retry_after_seconds: 1,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 120_000,
            body_read_timeout_ms: 30_000,
            max_pending_body_bytes_per_core: 512 << 20,
            max_decompressed_body_bytes: 256 << 20,
            auth_enabled: false,
            ping_auth_enabled: false,
            pprof_auth_enabled: false,
            auth_failures_before_delay: 5,
            auth_failure_delay_ms: 250,
            auth_failure_delay_max_ms: 15_000,
            auth_failure_memory_ms: 900_000,
            https_enabled: false,
            https_certificate: "/etc/ssl/influxdb.pem".into(),
            https_private_key: String::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            wal_fsync_delay_ms: 0,
            wal_segment_size_bytes: 64 * 1024 * 1024,
            wal_max_pending_bytes: 64 * 1024 * 1024,
            max_points_per_shard_batch: 100_000,
            cache_snapshot_bytes: 64 * 1024 * 1024,
            cache_snapshot_write_cold_ms: 600_000,
            cache_snapshot_wal_bytes: 256 * 1024 * 1024,
            cache_max_bytes: 1024 * 1024 * 1024,
            compaction_throughput_bytes_per_second: 48 * 1024 * 1024,
            compact_full_write_cold_ms: 4 * 3600 * 1000,
            block_cache_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            mesh_channel_capacity: 1024,
            io_memory_bytes: 2 * 1024 * 1024,
            ring_depth: 128,
            shutdown_timeout_ms: 30_000,
            pin_cores: true,
            spin_before_park_us: 0,
        }
    }
}

/// The full default configuration, documented. Printed by `shardcore config`.
pub const DEFAULT_CONFIG_TOML: &str = r#"# ShardCore node configuration. Every key is optional; shown here with its default.
# Units are part of the key names. Command-line flags override these values.

# Directory holding meta.json and every shard's WAL (created if missing).
data-dir = "./shardcore-data"

# Executor threads, each pinned to one CPU and owning its own shard partitions, WALs
# and connections. 0 = every online CPU. A shard made here is stored as this many
# partitions; restarting with another count keeps every point readable (partition p
# is served by core p % cores). More than the online CPUs only with pin-cores = false.
cores = 0

# Log filter for tracing (RUST_LOG syntax), e.g. "info", "warn", "shardcore=debug".
log-level = "info"

[http]
# Address of the InfluxDB 1.x compatible HTTP API. Core 0 accepts and hands each
# connection to the least-loaded core. The port is bound exclusively: a second
# process on it fails to start. Port 0 picks a free port; the log line
# "HTTP API listening on" names it.
bind-address = "127.0.0.1:8086"

# Largest request body accepted, in bytes as received (gzip or not, as InfluxDB's
# max-body-size); larger bodies get 413 "http: request body too large".
max-body-size-bytes = 25000000

# /write requests a core works on at once; past it the core answers
# 503 with Retry-After instead of queueing without bound.
max-concurrent-write-requests-per-core = 128

# Open client connections per core. A new connection past it closes the connection
# that has waited longest without a request in progress (silent, slow to send its
# headers, or idle between requests) to make room; only when every connection is busy
# in a request is the new one refused.
max-connections-per-core = 4096

# Value of the Retry-After header on a 503.
retry-after-seconds = 1

# A request's line and headers must arrive within this, counted from the connection's
# start (first request) or from the request's first byte (keep-alive); else the
# connection is closed. Bounds silent and slowloris connections.
header-read-timeout-ms = 10000

# A keep-alive connection with no request for this long is closed (clients reconnect;
# Go's and Python's clients keep idle connections 90 s or less).
idle-timeout-ms = 120000

# A request body must have arrived whole within this, counted from the end of its
# headers; else the request gets 408 and the connection is closed. A /write holds a
# write slot only once its body is in, so a slow client delays nobody else.
body-read-timeout-ms = 30000

# Bytes of request bodies a core holds while they are still arriving (a /write holds
# its body as it comes in, before it takes a write slot); a body that would pass it is
# answered 503 with Retry-After. Slow clients hold little; this bounds fast big ones.
max-pending-body-bytes-per-core = 536870912

# A gzip request body may decode to at most this many bytes; past it the request gets
# 413 "gzip body decompresses to more than max-decompressed-body-bytes" (max-body-size
# bounds the bytes received, as InfluxDB's; this bounds a gzip bomb).
max-decompressed-body-bytes = 268435456

# Users and privileges (InfluxDB's model): every request must authenticate (u/p
# parameters, HTTP Basic, or "Authorization: Token user:password") once an admin
# exists; before that only CREATE USER ... WITH ALL PRIVILEGES is allowed.
auth-enabled = false

# With auth-enabled: /ping and /health need a user too.
ping-auth-enabled = false

# With auth-enabled: /debug/* and /metrics need an admin.
pprof-auth-enabled = false

# Brute force: after this many failed logins of one (source address, user), each
# further attempt waits its turn (counted per core)...
auth-failures-before-delay = 5

# ...auth-failure-delay-ms at first, doubling per failure...
auth-failure-delay-ms = 250

# ...up to this; an attempt that would wait longer is answered 401 unchecked.
auth-failure-delay-max-ms = 15000

# A pair with no failure for this long is forgotten (a success forgets it at once).
auth-failure-memory-ms = 900000

# TLS on the HTTP API (rustls): the API speaks HTTPS only.
https-enabled = false

# PEM file with the certificate chain (leaf first); with no https-private-key it holds
# the private key too. Read at start-up and again on SIGHUP (a failed reload keeps the
# certificate in use and logs why).
https-certificate = "/etc/ssl/influxdb.pem"

# PEM file with the private key (PKCS#8, PKCS#1 or SEC1); empty: in https-certificate.
https-private-key = ""

[storage]
# Group commit: how long the WAL waits for more writes before it fsyncs.
# 0 = sync as soon as the previous sync finishes (requests that arrive during a
# sync share the next one). An acknowledged write is always on disk.
wal-fsync-delay-ms = 0

# A WAL segment file is closed and a new one started past this size.
wal-segment-size-bytes = 67108864

# WAL bytes waiting for the next fsync on one shard; past it writers wait for the
# sync in progress before they are admitted.
wal-max-pending-bytes = 67108864

# Points of one request for one shard are cut into batches of at most this many.
max-points-per-shard-batch = 100000

# A core's in-memory heads are written into compressed data files (and the WAL
# segments they cover removed) once they hold this many bytes (InfluxDB's
# cache-snapshot-memory-size, per core here)...
cache-snapshot-bytes = 67108864

# ...or once a partition has had no write for this long (InfluxDB's
# cache-snapshot-write-cold-duration, 10m).
cache-snapshot-write-cold-ms = 600000

# ...or once a partition's WAL on disk passes this many bytes: heads keep most values
# compressed (~2-3 bytes each) while the WAL holds the raw lines (~35 bytes per
# value), so this bounds what a restart replays and the WAL's disk use. 0 = no limit.
cache-snapshot-wal-bytes = 268435456

# Past this many head bytes on a core, writes get 503 + Retry-After
# ("cache-max-memory-size exceeded") until a flush frees room; never an
# out-of-memory kill. 0 = no limit. (InfluxDB's cache-max-memory-size, per core.)
cache-max-bytes = 1073741824

# Compactions merge data files of one size in the background (four to sixteen at a
# time), writing at most this many bytes per second per core (InfluxDB's
# compact-throughput, 48m).
compaction-throughput-bytes-per-second = 50331648

# A partition with no write for this long has all its files rewritten into one with
# large blocks (InfluxDB's compact-full-write-cold-duration, 4h).
compact-full-write-cold-ms = 14400000

# Decoded data file blocks kept in memory per core for queries (data files are read
# with O_DIRECT, so the page cache does not hold them); the least recently used go
# first. 0 = decode every block at every read.
block-cache-bytes = 67108864

[runtime]
# Messages queued on each core-to-core channel before senders wait.
mesh-channel-capacity = 1024

# Locked memory each core's io_uring registers for I/O buffers.
io-memory-bytes = 2097152

# io_uring submission queue depth per core.
ring-depth = 128

# On SIGINT/SIGTERM, how long in-flight requests may take before the node exits.
shutdown-timeout-ms = 30000

# Pin core k's executor thread to CPU k. Turn off when several nodes share one
# machine (tests, benchmarks): pinned, every node would run its core 0 on CPU 0;
# unpinned, cores may also exceed the online CPUs.
pin-cores = true

# An idle core keeps polling this long (microseconds) before it sleeps. A sleeping
# core is woken by the kernel when another core sends it work (a query's scan, a
# write for its shard), which costs tens to hundreds of microseconds; spinning trades
# idle CPU for that latency. 0 = sleep at once.
spin-before-park-us = 0

[cluster]
# This node's id; unique in the cluster. Placement sorts nodes by id.
node-id = 1

# Cluster port base: core k listens for other nodes on this port + k. Only used when
# peers are configured.
bind = "127.0.0.1:8088"

# The address other nodes reach this node at ("" = bind).
advertise = ""

# Every other node of the cluster, as "id@host:port" with that node's cluster port
# base. Every node lists the same set (itself excluded). Empty = a single node.
peers = []

# Secret every node shares; a peer must prove it (HMAC-SHA256 over a nonce) before it
# may write. Required when peers are configured.
shared-secret = ""

# Or a file holding the secret (trailing newline ignored); it wins over shared-secret.
shared-secret-file = ""

# A remote shard write that has not answered by then counts as failed.
write-timeout-ms = 10000

# Connecting to a peer gives up after this long.
dial-timeout-ms = 2000

# Connections per (peer node, peer core) from each core of this node.
pool-max-connections = 3

# A write waits at most this long for a free pooled connection, then fails with
# "timed out waiting for free connection".
pool-wait-timeout-ms = 5000

# Requests in flight at once on one node-to-node connection, answered by request id.
# A sender with every connection of a pool at this bound waits (pool-wait-timeout-ms);
# a receiver at this bound stops reading that connection until a request finishes.
max-inflight-requests-per-connection = 16

# Largest frame accepted from a peer (a bigger one closes that connection).
max-frame-bytes = 67108864

# About how much of a query scan (JSON) one answer to a peer carries; the peer holds
# the rest until the querying node asks for the next page (at most 16 held scans per
# core, each dropped 30 s after its last read). At most max-frame-bytes / 4.
map-page-bytes = 4194304

# How often core 0 exchanges databases and retention policies with every peer (also
# at start-up and after each DDL), so a node that was down converges.
meta-sync-interval-ms = 10000

# Mutual TLS on the cluster ports: each node presents tls-certificate and accepts only
# peers whose certificate tls-ca-certificate signed. The shared-secret handshake still
# runs inside. Every node of a cluster must agree.
tls-enabled = false

# PEM file with this node's certificate chain (leaf first); with no tls-private-key it
# holds the key too.
tls-certificate = ""

# PEM file with this node's private key; empty: in tls-certificate.
tls-private-key = ""

# PEM file with the CA certificate(s) that signed every node's certificate.
tls-ca-certificate = ""

# The name (DNS name or IP) every node's certificate carries, for clusters sharing one
# certificate; empty: a peer's certificate must carry the IP address it is dialled at.
tls-server-name = ""

[query]
# Points one SELECT may read before it fails with "max-select-point limit
# exceeded"; 0 = no limit (InfluxDB's default).
max-select-point = 0

# Series one SELECT may read; 0 = no limit.
max-select-series = 0

# GROUP BY time windows one SELECT may produce; 0 = no limit other than a
# built-in ceiling of 1000000.
max-select-buckets = 0

# Rows of one statement's answer; the rest is cut and the series marked
# "partial": true, as InfluxDB's [http] max-row-limit. 0 = no limit.
max-row-limit = 0

# A statement running longer than this fails with "query-timeout limit exceeded"
# and its scans on other nodes are abandoned; 0 = no limit (InfluxDB's default).
query-timeout-ms = 0

# Longest query text (the q parameter, all its statements) accepted; a longer one is
# refused before it is parsed ("query too large"). Parsing costs memory in proportion
# to the text (~60x for an expression of small terms). 0 = only max-body-size-bytes.
max-query-bytes = 1048576

[hinted-handoff]
# Queued bytes per destination node (per core); past it a write for that node fails
# and the consistency level decides the client's answer.
max-size-bytes = 10737418240

# Records older than this are dropped (and counted).
max-age-seconds = 604800

# Size of each preallocated, mmapped queue segment file.
segment-size-bytes = 10485760

# Replay back-off after a failure: from this...
retry-interval-ms = 1000

# ...doubling up to this.
retry-max-interval-ms = 10000

# Replay speed cap per queue, so a returning node keeps serving live writes. 0 = none.
retry-rate-limit-bytes-per-second = 50000000

# How often old records are purged.
purge-interval-seconds = 60

# Records of one queue sent to its destination at once (pipelined; records of one
# shard share a connection so they apply in order). 1 = one at a time; at most 16.
replay-max-inflight-records = 4

[retention]
# Drop shard groups that ended before now minus their retention policy's duration
# (InfluxDB's retention service). Every core checks its own partitions, every node
# its own shards, by the same rule: no coordination.
enabled = true

# How often each core checks (InfluxDB's check-interval, 30m).
check-interval-ms = 1800000

[continuous-queries]
# Run continuous queries (InfluxDB's [continuous_queries]). In a cluster each CQ runs
# on one node per interval: the first live node of an order every node computes alike
# from the CQ's name; another takes over when it stops answering, from the last run
# recorded in the cluster's metadata.
enabled = true

# Log each run: its time range and how long it took.
log-enabled = true

# How often the service checks whether a CQ is due (InfluxDB's run-interval, 1s).
run-interval-ms = 1000

[monitor]
# Write this node's statistics (SHOW STATS' groups, tagged with hostname and nodeID)
# into store-database, retention policy `monitor` (7 days), every store-interval-ms, as
# InfluxDB's self-monitoring does; the database and policy are made when missing.
store-enabled = true

# The database the statistics go to.
store-database = "_internal"

# How often they are written (InfluxDB's store-interval, 10s).
store-interval-ms = 10000
"#;

impl Config {
    /// Reads a config file; a missing `path` means all defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text and validates it.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_string(),
            })
        };
        if self.http.bind_address.parse::<SocketAddr>().is_err() {
            return invalid(
                "http.bind-address",
                &format!(
                    "`{}` is not an IP:port address, e.g. 127.0.0.1:8086",
                    self.http.bind_address
                ),
            );
        }
        if self.http.max_decompressed_body_bytes < self.http.max_body_size_bytes {
            return invalid(
                "http.max-decompressed-body-bytes",
                "must be at least max-body-size-bytes",
            );
        }
        if self.http.max_body_size_bytes == 0 {
            return invalid("http.max-body-size-bytes", "must be greater than 0");
        }
        if self.http.max_concurrent_write_requests_per_core == 0 {
            return invalid(
                "http.max-concurrent-write-requests-per-core",
                "must be greater than 0",
            );
        }
        for (key, value) in [
            (
                "http.header-read-timeout-ms",
                self.http.header_read_timeout_ms,
            ),
            ("http.idle-timeout-ms", self.http.idle_timeout_ms),
            ("http.body-read-timeout-ms", self.http.body_read_timeout_ms),
        ] {
            if value == 0 {
                return invalid(key, "must be greater than 0");
            }
        }
        if self.http.auth_failure_delay_max_ms < self.http.auth_failure_delay_ms {
            return invalid(
                "http.auth-failure-delay-max-ms",
                "must be at least auth-failure-delay-ms",
            );
        }
        if self.http.https_enabled && self.http.https_certificate.is_empty() {
            return invalid(
                "http.https-certificate",
                "must name a PEM file when https-enabled",
            );
        }
        if self.cluster.tls_enabled
            && (self.cluster.tls_certificate.is_empty()
                || self.cluster.tls_ca_certificate.is_empty())
        {
            return invalid(
                "cluster.tls-certificate",
                "tls-enabled needs tls-certificate and tls-ca-certificate",
            );
        }
        if self.http.max_connections_per_core == 0 {
            return invalid("http.max-connections-per-core", "must be greater than 0");
        }
        if self.storage.wal_segment_size_bytes < 4096 {
            return invalid("storage.wal-segment-size-bytes", "must be at least 4096");
        }
        if self.storage.wal_max_pending_bytes < 4096 {
            return invalid("storage.wal-max-pending-bytes", "must be at least 4096");
        }
        if self.storage.cache_snapshot_bytes < 4096 {
            return invalid("storage.cache-snapshot-bytes", "must be at least 4096");
        }
        if self.storage.cache_max_bytes != 0
            && self.storage.cache_max_bytes < self.storage.cache_snapshot_bytes
        {
            return invalid(
                "storage.cache-max-bytes",
                "must be 0 (no limit) or at least cache-snapshot-bytes",
            );
        }
        if self.storage.compaction_throughput_bytes_per_second < 65536 {
            return invalid(
                "storage.compaction-throughput-bytes-per-second",
                "must be at least 65536",
            );
        }
        if self.storage.max_points_per_shard_batch == 0 {
            return invalid(
                "storage.max-points-per-shard-batch",
                "must be greater than 0",
            );
        }
        if self.runtime.mesh_channel_capacity == 0 {
            return invalid("runtime.mesh-channel-capacity", "must be greater than 0");
        }
        if self.runtime.io_memory_bytes < 64 * 1024 {
            return invalid("runtime.io-memory-bytes", "must be at least 65536");
        }
        if !self.runtime.ring_depth.is_power_of_two() || self.runtime.ring_depth < 8 {
            return invalid("runtime.ring-depth", "must be a power of two of at least 8");
        }
        if self.cluster.bind.parse::<SocketAddr>().is_err() {
            return invalid(
                "cluster.bind",
                &format!("`{}` is not an IP:port address", self.cluster.bind),
            );
        }
        if !self.cluster.advertise.is_empty()
            && self.cluster.advertise.parse::<SocketAddr>().is_err()
        {
            return invalid("cluster.advertise", "not an IP:port address");
        }
        let peers = self.cluster.parsed_peers()?;
        if !peers.is_empty() && self.cluster.secret()?.is_empty() {
            return invalid(
                "cluster.shared-secret",
                "a cluster with peers needs a shared secret (or shared-secret-file)",
            );
        }
        if self.cluster.pool_max_connections == 0 {
            return invalid("cluster.pool-max-connections", "must be greater than 0");
        }
        if !(1..=MAX_INFLIGHT_REQUESTS_PER_CONNECTION)
            .contains(&self.cluster.max_inflight_requests_per_connection)
        {
            return invalid(
                "cluster.max-inflight-requests-per-connection",
                &format!("must be from 1 to {MAX_INFLIGHT_REQUESTS_PER_CONNECTION}"),
            );
        }
        // A page holds at least one series, so a page can overshoot: leave room.
        if self.cluster.map_page_bytes < 1024
            || self.cluster.map_page_bytes > self.cluster.max_frame_bytes / 4
        {
            return invalid(
                "cluster.map-page-bytes",
                "must be from 1024 to a quarter of max-frame-bytes",
            );
        }
        if self.hinted_handoff.segment_size_bytes < 4096 {
            return invalid("hinted-handoff.segment-size-bytes", "must be at least 4096");
        }
        if self.hinted_handoff.max_size_bytes == 0 {
            return invalid("hinted-handoff.max-size-bytes", "must be greater than 0");
        }
        if !(1..=MAX_REPLAY_INFLIGHT_RECORDS)
            .contains(&self.hinted_handoff.replay_max_inflight_records)
        {
            return invalid(
                "hinted-handoff.replay-max-inflight-records",
                &format!("must be from 1 to {MAX_REPLAY_INFLIGHT_RECORDS}"),
            );
        }
        if self.monitor.store_interval_ms == 0 {
            return invalid("monitor.store-interval-ms", "must be greater than 0");
        }
        if self.monitor.store_enabled && self.monitor.store_database.is_empty() {
            return invalid("monitor.store-database", "must not be empty");
        }
        if self.continuous_queries.run_interval_ms == 0 {
            return invalid(
                "continuous-queries.run-interval-ms",
                "must be greater than 0",
            );
        }
        if self.retention.check_interval_ms == 0 {
            return invalid("retention.check-interval-ms", "must be greater than 0");
        }
        if self.hinted_handoff.retry_interval_ms == 0 {
            return invalid("hinted-handoff.retry-interval-ms", "must be greater than 0");
        }
        if self.cluster.meta_sync_interval_ms == 0 {
            return invalid("cluster.meta-sync-interval-ms", "must be greater than 0");
        }
        if self.cluster.write_timeout_ms == 0 {
            return invalid("cluster.write-timeout-ms", "must be greater than 0");
        }
        // Pinned executors need a CPU each; unpinned ones may share CPUs (a data
        // directory moved from a larger machine, tests of other core counts).
        let online = online_cpus();
        if self.cores > online && self.runtime.pin_cores {
            return invalid(
                "cores",
                &format!(
                    "{} cores asked for, but only {online} CPUs are online (set [runtime] \
                     pin-cores = false to run more executors than CPUs)",
                    self.cores
                ),
            );
        }
        if self.cores > crate::limits::MAX_CORES {
            return invalid(
                "cores",
                &format!("at most {} cores", crate::limits::MAX_CORES),
            );
        }
        if self
            .log_level
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            return invalid("log-level", "not a valid tracing filter");
        }
        Ok(())
    }

    /// Cores to run: the configured count, or every online CPU.
    pub fn effective_cores(&self) -> usize {
        if self.cores == 0 {
            online_cpus()
        } else {
            self.cores
        }
    }

    pub fn http_bind(&self) -> SocketAddr {
        self.http
            .bind_address
            .parse()
            .expect("validated in Config::validate")
    }
}

/// CPUs this process may run on.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_default_config_is_the_default() {
        let parsed = Config::parse(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[http]\nbind-adress = \"x\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bind-adress"), "{msg}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::parse("[http]\nbind-address = \"nonsense\"\n").unwrap_err();
        assert!(err.to_string().contains("http.bind-address"), "{err}");
        let err = Config::parse("[storage]\nwal-fsync-delay-ms = \"slow\"\n").unwrap_err();
        assert!(err.to_string().contains("wal-fsync-delay-ms"), "{err}");
        let err = Config::parse("cores = 100000\n").unwrap_err();
        assert!(err.to_string().contains("`cores`"), "{err}");
    }
}
