//! Test harness: starts the real `shardcore` binary on a loopback ephemeral port,
//! talks HTTP/1.1 to it with a tiny blocking client, and kills or stops it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_shardcore");

/// A running node process.
pub struct Node {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<String>>,
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// The `[monitor]` section test nodes run with unless their config has one.
pub const MONITOR_OFF: &str = "[monitor]\nstore-enabled = false\n";

impl Node {
    /// Starts a node on `data_dir` with `--cores 2` and port 0, waiting until it serves.
    pub fn start(data_dir: &Path) -> Node {
        Self::start_with(data_dir, &["--cores", "2"])
    }

    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Node {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// Starts a node with `--cores 2` and `config` (TOML) as its config file.
    pub fn start_with_config(data_dir: &Path, config: &str) -> Node {
        std::fs::create_dir_all(data_dir).unwrap();
        let path = data_dir.with_extension("toml");
        std::fs::write(&path, config).unwrap();
        Self::start_with(
            data_dir,
            &["--cores", "2", "--config", path.to_str().unwrap()],
        )
    }

    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Node {
        // Tests compare answers with influxd run without self-monitoring, and count
        // databases: the `_internal` store is off unless a test's config says otherwise.
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        match extra.iter().position(|a| a == "--config") {
            Some(i) if i + 1 < extra.len() => {
                let path = PathBuf::from(&extra[i + 1]);
                if let Ok(text) = std::fs::read_to_string(&path) {
                    if !text.contains("[monitor]") {
                        std::fs::write(&path, format!("{text}\n{MONITOR_OFF}")).unwrap();
                    }
                }
            }
            _ => {
                let path = data_dir.with_extension("test.toml");
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).unwrap();
                }
                std::fs::write(&path, MONITOR_OFF).unwrap();
                extra.push("--config".into());
                extra.push(path.to_str().unwrap().to_string());
            }
        }
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-bind", "127.0.0.1:0"])
            .args(&extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shardcore");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("HTTP API listening on ").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr);
                        }
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                panic!("node did not start; log:\n{}", log.lock().unwrap().as_str());
            }
        };
        Node {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// A counter or gauge from `/metrics` (without labels), e.g.
    /// `shardcore_http_connections_evicted_total`.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.request("GET", "/metrics", &[], b"").text();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    /// Resident memory of the process, bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// SIGKILL: a crash, nothing flushed beyond what was acknowledged.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("node did not exit after SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        http(self.addr, method, path, headers, body).expect("HTTP request")
    }

    /// `GET /query?db=..&q=..`, answered 200: the JSON body.
    pub fn answer(&self, db: &str, q: &str) -> serde_json::Value {
        let r = self.request(
            "GET",
            &format!("/query?db={db}&q={}", urlencode(q)),
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    pub fn query(&self, q: &str) -> Response {
        self.query_on("", q)
    }

    /// `POST /query` with `q` (and `db` when not empty) as a form: any answer.
    pub fn query_on(&self, db: &str, q: &str) -> Response {
        let mut body = format!("q={}", urlencode(q));
        if !db.is_empty() {
            body.push_str(&format!("&db={}", urlencode(db)));
        }
        self.request(
            "POST",
            "/query",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    }

    pub fn create_database(&self, db: &str) {
        let r = self.query(&format!("CREATE DATABASE \"{db}\""));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.json()["results"][0].get("error").is_none(),
            "{}",
            r.text()
        );
    }

    /// POST /write?{query} with the given body.
    pub fn write(&self, query: &str, body: &[u8]) -> Response {
        self.request("POST", &format!("/write?{query}"), &[], body)
    }

    /// All stored points of `db` through the inspect route, as (series, field, time, value).
    pub fn dump(&self, db: &str, extra: &str) -> Vec<(String, String, i64, serde_json::Value)> {
        let r = self.request(
            "GET",
            &format!("/debug/shard-dump?db={}{extra}", urlencode(db)),
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["series"].as_str().unwrap().to_string(),
                    p["field"].as_str().unwrap().to_string(),
                    p["time"].as_i64().unwrap(),
                    p["value"].clone(),
                )
            })
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A request's bytes: head (with `Connection: close` when `close`) and body.
fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{connection}Content-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(stream)
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = connect(addr)?;
    stream.write_all(&request_bytes(addr, method, path, headers, body, true))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// One HTTP/1.1 request on a fresh keep-alive connection, read to the end of its
/// answer (Content-Length or the last chunk) before the connection closes: a server
/// that answers without reading the body (a 401 or 403 on /write) cannot reset the
/// connection before the answer is read, as it may with `Connection: close`.
pub fn http_keep_alive(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = connect(addr)?;
    stream.write_all(&request_bytes(addr, method, path, headers, body, false))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let done = match length {
                Some(n) => raw.len() >= end + 4 + n,
                None if head.contains("transfer-encoding: chunked") => raw.ends_with(b"0\r\n\r\n"),
                None => head.starts_with("http/1.1 204") || head.starts_with("http/1.1 304"),
            };
            if done {
                break;
            }
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
    out
}

/// A fresh temporary data directory.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("shardcore-test-")
        .tempdir()
        .unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Polls `check` every 50 ms until it holds; fails the test naming `what` after
/// `within`.
pub fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {} s",
            within.as_secs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Node {
    /// `/debug/shards`: one entry per (shard, partition) with its core, series, values.
    pub fn debug_shards(&self) -> Vec<serde_json::Value> {
        self.request("GET", "/debug/shards", &[], b"").json()["shards"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// `shardcore inspect DATA_DIR`'s listing (one line per shard partition after a header).
pub fn inspect_listing(data_dir: &Path) -> String {
    let out = Command::new(BIN)
        .arg("inspect")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// WAL segment files of every shard partition under `data_dir`
/// (`shards/<id>/<partition>/wal/`), sorted.
pub fn wal_segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(data_dir.join("shards")) else {
        return out;
    };
    for shard in shards.flatten() {
        for partition in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(files) = std::fs::read_dir(partition.path().join("wal")) {
                for f in files.flatten() {
                    out.push(f.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// Two consecutive free loopback ports (a node's cluster ports for 2 cores).
///
/// They come from below the kernel's ephemeral range (32768-60999 by default), so no
/// node binding port 0 for HTTP can be handed one of them between this check and the
/// node's own bind; each test process starts at its own offset (pid) and never hands
/// out a port twice.
pub fn free_port_pair() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 500) as u16 * 24;
    loop {
        let step = NEXT.fetch_add(2, Ordering::Relaxed);
        let p = 20_000 + (base - 20_000 + step) % 12_000;
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(p) && free(p + 1) {
            return p;
        }
    }
}

/// A cluster of real node processes on loopback, each with its own data dir and config.
pub struct Cluster {
    pub nodes: Vec<Option<Node>>,
    pub dirs: Vec<tempfile::TempDir>,
    pub configs: Vec<PathBuf>,
    pub cluster_ports: Vec<u16>,
    pub cores: usize,
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) with `cores` cores each and extra `[cluster]` keys.
    pub fn start(n: usize, cores: usize, extra_cluster_toml: &str) -> Cluster {
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port_pair()).collect();
        let mut dirs = Vec::new();
        let mut configs = Vec::new();
        for i in 0..n {
            let dir = temp_dir();
            let peers: Vec<String> = (0..n)
                .filter(|&j| j != i)
                .map(|j| format!("\"{}@127.0.0.1:{}\"", j + 1, cluster_ports[j]))
                .collect();
            let config = dir.path().join("node.toml");
            std::fs::write(
                &config,
                format!(
                    "[cluster]\nnode-id = {}\nbind = \"127.0.0.1:{}\"\npeers = [{}]\nshared-secret = \"test-secret\"\n{extra_cluster_toml}",
                    i + 1,
                    cluster_ports[i],
                    peers.join(", ")
                ),
            )
            .unwrap();
            configs.push(config);
            dirs.push(dir);
        }
        let mut cluster = Cluster {
            nodes: (0..n).map(|_| None).collect(),
            dirs,
            configs,
            cluster_ports,
            cores,
        };
        for i in 0..n {
            cluster.start_node(i);
        }
        cluster
    }

    pub fn start_node(&mut self, i: usize) {
        self.start_node_with_cores(i, self.cores);
    }

    /// Starts node `i` with `cores` cores (1 or 2: each node has two cluster ports).
    pub fn start_node_with_cores(&mut self, i: usize, cores: usize) {
        // A node killed a moment ago may still hold its listeners: glommio's io_uring is
        // torn down asynchronously after the process exits, and the listening sockets
        // with it (a few ms to ~100 ms), and nodes bind without SO_REUSEPORT.
        let deadline = Instant::now() + Duration::from_secs(10);
        let base = self.cluster_ports[i];
        while (base..base + cores as u16)
            .any(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_err())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let data = self.dirs[i].path().join("data");
        let cores = cores.to_string();
        let config = self.configs[i].to_str().unwrap().to_string();
        self.nodes[i] = Some(Node::start_with(
            &data,
            &["--cores", &cores, "--config", &config],
        ));
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node running")
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().expect("node running")
    }

    /// Runs a query on every running node.
    pub fn query_all(&self, q: &str) {
        for node in self.nodes.iter().flatten() {
            let r = node.query(q);
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(
                r.json()["results"][0].get("error").is_none(),
                "{}",
                r.text()
            );
        }
    }
}

/// The owners placement gives a point of `db`.`autogen` (series key `series`, time
/// `ts`) in a cluster of nodes 1, 2 and 3 with hourly shard groups and `rf` copies.
pub fn owners_of(db: &str, rf: u32, series: &str, ts: i64) -> std::collections::BTreeSet<u64> {
    use shardcore::placement::{self, Membership};
    const HOUR_NS: i64 = 3_600_000_000_000;
    let membership = Membership::new(vec![1, 2, 3]);
    let start = placement::shard_group_start(ts, HOUR_NS);
    let group = placement::place_group(db, "autogen", start, HOUR_NS, rf, &membership);
    let hash = shardcore::base::hash::fnv1a64(series.as_bytes());
    let index = placement::shard_index(hash, group.shards.len());
    group.shards[index as usize]
        .owners
        .iter()
        .copied()
        .collect()
}

/// A running Debian influxd (1.6.7), the reference the differential tests compare with.
pub struct Influxd {
    pub child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn influxd_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SHARDCORE_DIFF_INFLUXD") {
        return Some(PathBuf::from(p));
    }
    let out = Command::new("sh")
        .args(["-c", "command -v influxd"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Starts influxd on loopback with everything in a temp dir and `extra_http` (TOML
/// lines) in its `[http]` section; Err says why it could not.
pub fn start_influxd(extra_http: &str) -> Result<Influxd, String> {
    let bin = influxd_binary()
        .ok_or("influxd is not installed (apt-get install influxdb; .ci/run does this)")?;
    let dir = tempfile::Builder::new()
        .prefix("shardcore-influxd-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let d = dir.path().display();
    let (http_port, rpc_port) = (free_port_pair(), free_port_pair());
    // Debian's build renamed upstream's `reporting-disabled` to `reporting-enabled`;
    // set both (unknown keys are ignored). Everything not set keeps its default.
    let config = format!(
        "reporting-disabled = true\n\
         reporting-enabled = false\n\
         bind-address = \"127.0.0.1:{rpc_port}\"\n\
         [meta]\n  dir = \"{d}/meta\"\n  logging-enabled = false\n\
         [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
         [monitor]\n  store-enabled = false\n\
         [http]\n  bind-address = \"127.0.0.1:{http_port}\"\n  log-enabled = false\n  \
           bind-socket = \"{d}/influxdb.sock\"\n{extra_http}\n\
         [continuous_queries]\n  enabled = false\n\
         [shard-precreation]\n  enabled = false\n\
         [retention]\n  enabled = false\n\
         [subscriber]\n  enabled = false\n"
    );
    let config_path = dir.path().join("influxdb.conf");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let log_path = dir.path().join("influxd.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bin);
    cmd.arg("-config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    // INFLUXDB_* variables override the config file.
    for (k, _) in std::env::vars() {
        if k.starts_with("INFLUXDB_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("could not run {}: {e}", bin.display()))?;
    let addr: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let mut server = Influxd {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http(addr, "GET", "/ping", &[], b"") {
            if r.status == 204 {
                let version = r.header("X-Influxdb-Version").unwrap_or("?").to_string();
                eprintln!("influxd {version} ({}) on {addr}", bin.display());
                return Ok(server);
            }
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!(
                "influxd exited ({status}) before answering /ping: {}",
                log.chars().take(2000).collect::<String>()
            ));
        }
        if Instant::now() > deadline {
            return Err("influxd did not answer /ping within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether python3 can import `modules` (e.g. "influxdb, msgpack"); prints why a test
/// skips when not.
pub fn python_has(modules: &str, install: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: python3 cannot import {modules} ({install})");
    }
    ok
}

/// Runs a Python script with `args`; panics with its output unless it exits 0 and
/// prints `ok`.
pub fn run_python(script: &str, args: &[&str]) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("ok"), "{text}");
}
