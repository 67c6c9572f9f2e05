//! `shardcore-bench attack`: the write latency a normal client sees while hostile
//! clients hold connections (issue 12's figure), measured in one run: first without
//! them, then with them, against any InfluxDB 1.x-compatible server.
//!
//! The normal client: one keep-alive connection, a batch of `--batch-lines` lines per
//! POST, closed loop. The hostile ones, each reopened as soon as the server closes it
//! (a real attacker keeps its count up):
//! - `--idle` connections that send nothing;
//! - `--slow-bodies` writes that announce a 1 MB body and send one byte a second;
//! - `--slowloris` connections that send a header byte every 500 ms and never finish.
//!
//! Back of the envelope: 4,000 idle connections are 4,000 descriptors here and there
//! and one check of each per 100 ms (40 k `recv(MSG_PEEK)` a second on one thread);
//! the slow clients are a thread each (sleeping), a few hundred bytes a second.

use hdrhistogram::Histogram;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run.
pub struct AttackOptions {
    pub url: String,
    pub db: String,
    pub seconds: u64,
    pub batch_lines: usize,
    pub idle: usize,
    pub slow_bodies: usize,
    pub slowloris: usize,
}

/// The normal client's latencies in one phase.
pub struct Phase {
    pub name: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub latency_us: Histogram<u64>,
    /// Hostile connections open at the end of the phase, and how many the server
    /// closed (so they were reopened) during it.
    pub hostile_open: u64,
    pub hostile_closed: u64,
}

fn address(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs: {url}"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    host.to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} does not resolve"))
}

/// One HTTP/1.1 request on a kept-alive connection; the status.
fn request(stream: &mut TcpStream, head: &str, body: &[u8]) -> std::io::Result<u16> {
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    let head = crate::http1::read_head(&mut reader)
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .ok_or_else(|| std::io::Error::other("closed"))?;
    let status = head
        .start_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut ignored = Vec::new();
    crate::http1::read_body(&mut reader, head.response_framing(status), &mut ignored, 0)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(status)
}

fn post(addr: SocketAddr, path: &str, body: &[u8]) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    request(&mut s, &head, body)
}

/// Writes closed-loop for `duration`; the latency of every request.
fn normal_client(
    addr: SocketAddr,
    db: &str,
    batch_lines: usize,
    duration: Duration,
    phase: &'static str,
) -> (u64, u64, Histogram<u64>) {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let (mut requests, mut errors) = (0u64, 0u64);
    let mut stream: Option<TcpStream> = None;
    let started = Instant::now();
    let mut ts = if phase == "baseline" {
        1_000_000_000i64
    } else {
        2_000_000_000_000_000_000i64
    };
    while started.elapsed() < duration {
        let mut body = String::with_capacity(batch_lines * 40);
        for i in 0..batch_lines {
            ts += 1;
            body.push_str(&format!("normal,host=h{} value={ts}i {ts}\n", i % 10));
        }
        let head = format!(
            "POST /write?db={db} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let sent = Instant::now();
        let status = match stream.as_mut() {
            Some(s) => request(s, &head, body.as_bytes()),
            None => Err(std::io::Error::other("no connection")),
        };
        let status = match status {
            Ok(s) => Ok(s),
            Err(_) => {
                // (Re)connect once and retry: a closed keep-alive connection is normal.
                match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                    Ok(mut s) => {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                        let _ = s.set_nodelay(true);
                        let r = request(&mut s, &head, body.as_bytes());
                        stream = Some(s);
                        r
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let micros = sent.elapsed().as_micros().clamp(1, 60_000_000) as u64;
        requests += 1;
        match status {
            Ok(204) => {
                let _ = hist.record(micros);
            }
            _ => {
                errors += 1;
                stream = None;
            }
        }
    }
    (requests, errors, hist)
}

/// The hostile clients, running until `stop`; counts their connections.
struct Hostile {
    stop: Arc<AtomicBool>,
    open: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hostile {
    fn start(addr: SocketAddr, db: &str, options: &AttackOptions) -> Hostile {
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        {
            let (stop, open, closed, n) =
                (stop.clone(), open.clone(), closed.clone(), options.idle);
            threads.push(std::thread::spawn(move || {
                idle_keeper(addr, n, &stop, &open, &closed)
            }));
        }
        let slow_head = format!(
            "POST /write?db={db} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000000\r\n\r\n"
        );
        for i in 0..options.slow_bodies + options.slowloris {
            let (stop, open, closed) = (stop.clone(), open.clone(), closed.clone());
            let slow_body = i < options.slow_bodies;
            let head = slow_head.clone();
            threads.push(std::thread::spawn(move || {
                let (first, drip, every): (&[u8], &[u8], _) = if slow_body {
                    (head.as_bytes(), b"x", Duration::from_secs(1))
                } else {
                    (
                        b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                        b"a",
                        Duration::from_millis(500),
                    )
                };
                slow_client(addr, first, drip, every, &stop, &open, &closed)
            }));
        }
        Hostile {
            stop,
            open,
            closed,
            threads,
        }
    }

    fn finish(self) -> (u64, u64) {
        let counts = (
            self.open.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
        );
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        counts
    }
}

/// Keeps `n` silent connections open, reopening those the server closes.
fn idle_keeper(
    addr: SocketAddr,
    n: usize,
    stop: &AtomicBool,
    open: &AtomicU64,
    closed: &AtomicU64,
) {
    let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        for slot in conns.iter_mut() {
            if let Some(s) = slot {
                match s.peek(&mut buf) {
                    Ok(_) => {
                        // Closed (0) or answered: either way the server let go.
                        *slot = None;
                        open.fetch_sub(1, Ordering::Relaxed);
                        closed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        *slot = None;
                        open.fetch_sub(1, Ordering::Relaxed);
                        closed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if slot.is_none() {
                if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    let _ = s.set_nonblocking(true);
                    *slot = Some(s);
                    open.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `first`, then `drip` every `every`, reconnecting whenever the server closes.
fn slow_client(
    addr: SocketAddr,
    first: &[u8],
    drip: &[u8],
    every: Duration,
    stop: &AtomicBool,
    open: &AtomicU64,
    closed: &AtomicU64,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        open.fetch_add(1, Ordering::Relaxed);
        let _ = s.set_read_timeout(Some(every));
        let mut alive = s.write_all(first).is_ok();
        let mut buf = [0u8; 512];
        while alive && !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(_) => alive = false, // closed or answered (408)
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    alive = s.write_all(drip).is_ok();
                }
                Err(_) => alive = false,
            }
        }
        open.fetch_sub(1, Ordering::Relaxed);
        if !stop.load(Ordering::Relaxed) {
            closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs both phases.
pub fn run(options: &AttackOptions) -> Result<Vec<Phase>, String> {
    let addr = address(&options.url)?;
    let q = format!("q=CREATE+DATABASE+{}", options.db);
    post(addr, "/query", q.as_bytes()).map_err(|e| format!("CREATE DATABASE: {e}"))?;
    let duration = Duration::from_secs(options.seconds);
    let mut phases = Vec::new();
    let (requests, errors, latency_us) =
        normal_client(addr, &options.db, options.batch_lines, duration, "baseline");
    phases.push(Phase {
        name: "baseline",
        requests,
        errors,
        latency_us,
        hostile_open: 0,
        hostile_closed: 0,
    });
    let hostile = Hostile::start(addr, &options.db, options);
    // Let the attackers reach their numbers first.
    std::thread::sleep(Duration::from_secs(2));
    let (requests, errors, latency_us) =
        normal_client(addr, &options.db, options.batch_lines, duration, "attack");
    let (hostile_open, hostile_closed) = hostile.finish();
    phases.push(Phase {
        name: "under attack",
        requests,
        errors,
        latency_us,
        hostile_open,
        hostile_closed,
    });
    Ok(phases)
}

/// The phases as a Markdown table.
pub fn report(phases: &[Phase]) -> String {
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mut out = String::from(
        "| phase | writes | errors | p50 ms | p99 ms | p99.9 ms | max ms | hostile connections open (closed by the server) |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for p in phases {
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} ({}) |\n",
            p.name,
            p.requests,
            p.errors,
            ms(&p.latency_us, 0.5),
            ms(&p.latency_us, 0.99),
            ms(&p.latency_us, 0.999),
            p.latency_us.max() as f64 / 1000.0,
            p.hostile_open,
            p.hostile_closed
        ));
    }
    out
}
