//! The thread-per-core runtime: one pinned glommio executor per core, a channel mesh
//! between them, locked-memory set-up, signal handling and the shutdown sequence.
//!
//! **Invariant:** a core's index (0..cores) is ours, assigned here, and is the mesh peer
//! id; glommio's executor ids are never used as one. A core never sends a mesh message
//! to itself: local work is called directly.
//!
//! Shutdown (SIGINT/SIGTERM): every core stops accepting and answers 503 to new
//! requests; it waits for its in-flight requests; then all cores meet at a barrier (so
//! a write still waiting on another core's shard finishes); then every core syncs and
//! closes its WALs and its executor returns. A second signal exits at once.

use crate::base::shutdown::Shutdown;
use crate::config::Config;
use crate::limits;
use crate::meta::MetaStore;
use crate::node::MeshRequest;
use glommio::{LocalExecutorBuilder, Placement};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

/// Start-up failures, with what to do about them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("cannot raise the locked-memory limit (RLIMIT_MEMLOCK) to {needed_bytes} bytes for io_uring: {message}. Run `ulimit -l unlimited` (or set LimitMEMLOCK=infinity in the systemd unit, or --ulimit memlock=-1 for docker), or lower runtime.io-memory-bytes / --cores")]
    MemLock { needed_bytes: u64, message: String },
    #[error("cannot start executor for core {core}: {message}")]
    Executor { core: usize, message: String },
    #[error("cannot open data directory {dir}: {message}")]
    DataDir { dir: String, message: String },
    #[error("{0}")]
    Meta(#[from] crate::meta::MetaError),
    #[error("{0}")]
    Layout(#[from] crate::tsdb::layout::LayoutError),
    #[error("core {core} failed: {message}")]
    Core { core: usize, message: String },
    #[error("cannot start TLS: {0}")]
    Tls(#[from] crate::net::tls::TlsError),
}

/// Raises RLIMIT_MEMLOCK so every executor can lock its io_uring memory.
pub fn raise_memlock(needed_bytes: u64) -> Result<(), RuntimeError> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut current) } != 0 {
        return Err(RuntimeError::MemLock {
            needed_bytes,
            message: std::io::Error::last_os_error().to_string(),
        });
    }
    if current.rlim_cur == libc::RLIM_INFINITY || current.rlim_cur >= needed_bytes {
        return Ok(());
    }
    let wanted = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall on a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &wanted) } == 0 {
        return Ok(());
    }
    // Not privileged: go as high as the hard limit allows.
    if current.rlim_max == libc::RLIM_INFINITY || current.rlim_max >= needed_bytes {
        let soft = libc::rlimit {
            rlim_cur: current.rlim_max,
            rlim_max: current.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &soft) } == 0 {
            return Ok(());
        }
    }
    Err(RuntimeError::MemLock {
        needed_bytes,
        message: format!(
            "the hard limit is {} bytes",
            if current.rlim_max == libc::RLIM_INFINITY {
                "unlimited".to_string()
            } else {
                current.rlim_max.to_string()
            }
        ),
    })
}

/// Raises the open-files limit (RLIMIT_NOFILE) to its hard limit: every client and
/// peer connection, WAL segment and queue file takes a descriptor. Warns when even
/// that is below what the connection limits allow, since then `accept` fails (EMFILE)
/// before `max-connections-per-core` is reached.
pub fn raise_open_files(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < wanted {
        tracing::warn!(
            open_files_limit = limit.rlim_cur,
            wanted,
            "the open-files limit is below what max-connections-per-core allows; raise it (ulimit -n, LimitNOFILE) or lower the limit"
        );
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and every thread spawned after),
/// and starts a thread that waits for them: the first two request shutdown, SIGHUP
/// reloads the HTTPS certificate (when there is one).
pub fn install_signal_handler(
    shutdown: Arc<Shutdown>,
    tls: Option<Arc<crate::http::tls::TlsCertificates>>,
) {
    // SAFETY: sigset manipulation on a local, then pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut count = 0;
                loop {
                    let mut sig: libc::c_int = 0;
                    if libc::sigwait(&set, &mut sig) != 0 {
                        continue;
                    }
                    if sig == libc::SIGHUP {
                        match &tls {
                            Some(tls) => match tls.reload() {
                                Ok(()) => tracing::info!(
                                    certificate = %tls.certificate_path().display(),
                                    "SIGHUP: reloaded the HTTPS certificate; new connections use it"
                                ),
                                Err(e) => tracing::error!(
                                    error = %e,
                                    "SIGHUP: could not reload the HTTPS certificate; keeping the one in use"
                                ),
                            },
                            None => tracing::info!("SIGHUP: nothing to reload (https-enabled is off)"),
                        }
                        continue;
                    }
                    count += 1;
                    if count == 1 {
                        tracing::info!(
                            signal = sig,
                            "shutdown requested: finishing in-flight writes and syncing WALs"
                        );
                        shutdown.request();
                    } else {
                        tracing::warn!("second signal: exiting now");
                        std::process::exit(130);
                    }
                }
            })
            .expect("spawn signal thread");
    }
}

/// Runs a node until shutdown: opens meta, starts one executor per core and waits.
pub fn run(config: Config) -> Result<(), RuntimeError> {
    crate::metrics::started();
    let cores = config.effective_cores();
    let needed =
        (cores as u64) * (config.runtime.io_memory_bytes as u64 + limits::RING_MEMLOCK_BYTES);
    raise_memlock(needed)?;
    raise_open_files(
        (cores * config.http.max_connections_per_core) as u64 + limits::SPARE_FILE_DESCRIPTORS,
    );
    std::fs::create_dir_all(&config.data_dir).map_err(|e| RuntimeError::DataDir {
        dir: config.data_dir.display().to_string(),
        message: e.to_string(),
    })?;
    // The format check comes first: a refused directory is left exactly as it was.
    let partitions = Arc::new(crate::tsdb::layout::prepare(&config.data_dir, cores)?);
    if partitions.rehomed() > 0 {
        tracing::info!(
            shards = partitions.rehomed(),
            cores,
            "shards made with another core count keep their partitions; each partition p is served by core p % cores"
        );
    }
    let meta = Arc::new(MetaStore::open(&config.data_dir, config.cluster.node_id)?);
    let field_types = Arc::new(crate::tsdb::index::NodeFieldTypes::default());
    let peer_cores = Arc::new(crate::cluster::shard_writer::PeerCores::new(
        config
            .cluster
            .parsed_peers()
            .unwrap_or_default()
            .iter()
            .map(|p| p.node_id),
    ));
    let tls = if config.http.https_enabled {
        let files = crate::net::tls::PemFiles::new(
            ("https-certificate", &config.http.https_certificate),
            ("https-private-key", &config.http.https_private_key),
        );
        Some(Arc::new(crate::http::tls::TlsCertificates::load(files)?))
    } else {
        None
    };
    let cluster_tls = if config.cluster.tls_enabled {
        let files = crate::net::tls::PemFiles::new(
            ("cluster.tls-certificate", &config.cluster.tls_certificate),
            ("cluster.tls-private-key", &config.cluster.tls_private_key),
        );
        Some(Arc::new(crate::net::tls::ClusterTls::load(
            &files,
            &config.cluster.tls_ca_certificate,
            &config.cluster.tls_server_name,
        )?))
    } else {
        None
    };
    let shutdown = Arc::new(Shutdown::default());
    install_signal_handler(shutdown.clone(), tls.clone());
    let config = Arc::new(config);
    let mesh = crate::net::mesh::build::<MeshRequest>(cores, config.runtime.mesh_channel_capacity);
    let online = crate::config::online_cpus();
    // Core 0 binds (and reports the address, port 0 resolved) before the others start.
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let recovered = Arc::new(std::sync::Barrier::new(cores));
    let connection_counts: Arc<Vec<AtomicUsize>> =
        Arc::new((0..cores).map(|_| AtomicUsize::new(0)).collect());
    let directory = crate::tsdb::store::ShardDirectory::new(cores);
    let cache = crate::tsdb::cache::CacheGauge::new(cores, config.storage.cache_max_bytes as usize);
    let mut handles = Vec::with_capacity(cores);
    let mut bound_addr = None;
    for (core, channels) in mesh.into_iter().enumerate() {
        let placement = if config.runtime.pin_cores && cores <= online {
            Placement::Fixed(core)
        } else {
            Placement::Unbound
        };
        let ctx_args = crate::node::CoreArgs {
            core,
            cores,
            config: config.clone(),
            meta: meta.clone(),
            shutdown: shutdown.clone(),
            channels,
            http_bind: bound_addr.unwrap_or_else(|| config.http_bind()),
            bound_tx: bound_tx.clone(),
            recovered: recovered.clone(),
            connection_counts: connection_counts.clone(),
            directory: directory.clone(),
            cache: cache.clone(),
            partitions: partitions.clone(),
            field_types: field_types.clone(),
            peer_cores: peer_cores.clone(),
            tls: tls.clone(),
            cluster_tls: cluster_tls.clone(),
        };
        let mut builder = LocalExecutorBuilder::new(placement);
        if config.runtime.spin_before_park_us > 0 {
            builder =
                builder.spin_before_park(Duration::from_micros(config.runtime.spin_before_park_us));
        }
        let builder = builder
            .name(&format!("core-{core}"))
            .io_memory(config.runtime.io_memory_bytes)
            .ring_depth(config.runtime.ring_depth);
        // Our own thread rather than `LocalExecutorBuilder::spawn`, which gives the
        // executor the default 2 MiB stack: deep InfluxQL needs more (see `limits`).
        let stack_bytes = std::env::var("SHARDCORE_CORE_STACK_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(crate::limits::CORE_STACK_BYTES);
        let handle = std::thread::Builder::new()
            .name(format!("core-{core}"))
            .stack_size(stack_bytes)
            .spawn(move || {
                let executor = match builder.make() {
                    Ok(executor) => executor,
                    Err(e) => {
                        let message = format!("cannot start executor for core {core}: {e}");
                        let _ = ctx_args.bound_tx.send(Err(message.clone()));
                        return Err(message);
                    }
                };
                executor.run(crate::node::run_core(ctx_args))
            })
            .map_err(|e| RuntimeError::Executor {
                core,
                message: e.to_string(),
            })?;
        handles.push(handle);
        if core == 0 {
            // Wait for core 0's listener (or its failure) before starting the others.
            match bound_rx.recv() {
                Ok(Ok(addr)) => bound_addr = Some(addr),
                Ok(Err(message)) => {
                    shutdown.request();
                    let _ = handles.pop().map(|h| h.join());
                    return Err(RuntimeError::Core { core: 0, message });
                }
                Err(_) => {
                    let result = handles.pop().map(|h| h.join());
                    return Err(RuntimeError::Core {
                        core: 0,
                        message: format!("core 0 exited during start-up: {result:?}"),
                    });
                }
            }
        }
    }
    drop(bound_tx);
    let mut failure = None;
    for (core, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => failure = failure.or(Some(RuntimeError::Core { core, message })),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the core's thread panicked".into());
                failure = failure.or(Some(RuntimeError::Core { core, message }))
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => {
            tracing::info!("shutdown complete");
            Ok(())
        }
    }
}
