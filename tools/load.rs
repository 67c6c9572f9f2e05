//! `load`: POSTs prepared batches to `/write` from W threads, one keep-alive
//! connection each, and measures every request into an HDR histogram (µs).
//!
//! All batches are built (and gzipped) before the clock starts, so the timed loop only
//! writes bytes and reads responses. Workers take the next batch index from a shared
//! counter. Closed loop (default): latency is send-to-response. Open loop (`--rate`):
//! batch i is due at `start + i * B / rate`; a worker sleeps until then, and latency is
//! measured from that intended time, so a stalled server shows up in the percentiles
//! instead of silently slowing the client (coordinated omission).
//!
//! A 503 is retried after its Retry-After (seconds, at most 60; 1 s if absent) up to
//! `--max-retries` times; its latency then includes the waits.

use crate::cpu_gen::{CpuGenerator, FIELDS_PER_LINE};
use crate::devops_gen::DevopsGenerator;
use crate::http1::{read_body, read_head, write_message, WireError};
use crate::report::{RequestLog, Summary, Tally};
use bytes::Bytes;
use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Response body bytes kept for error messages.
const KEEP_BODY_BYTES: usize = 512;
/// Longest Retry-After honoured.
const MAX_RETRY_AFTER_S: u64 = 60;

/// One request's worth of line protocol.
pub struct Batch {
    /// What goes on the wire (gzipped with `--gzip`).
    pub body: Bytes,
    pub lines: u64,
    pub values: u64,
    /// Uncompressed size.
    pub raw_bytes: u64,
}

/// Where and how to write.
pub struct LoadOptions {
    pub db: String,
    pub precision: String,
    pub consistency: String,
    pub workers: usize,
    pub batch_lines: u64,
    pub rate: Option<f64>,
    pub max_retries: u32,
    pub gzip: bool,
    pub create_db: bool,
    pub timeout: Duration,
    /// Keep one [`RequestLog`] per batch (for `--requests-out`).
    pub log_requests: bool,
    /// `Authorization` header value (`--username`/`--password`: HTTP Basic).
    pub authorization: Option<String>,
    /// Batches are Prometheus remote-write bodies, sent to `/api/v1/prom/write`.
    pub prometheus: bool,
}

/// The batches as Prometheus remote-write bodies (snappy protobuf), as Prometheus
/// sends them: one time series per (point, numeric field), named
/// `<measurement>_<field>`, the tags as labels, one sample each at the point's time
/// (ms). `lines` and `values` count samples.
pub fn prometheus_batches(batches: &mut [Batch]) {
    use shardcore::http::prom::{encode_write_request, snappy, Label, TimeSeries};
    use shardcore::lineproto::{parse, FieldValue, Precision};
    for batch in batches.iter_mut() {
        let parsed = parse(batch.body.clone(), Precision::Nanosecond, 0);
        let mut series = Vec::new();
        for point in &parsed.points {
            let measurement = String::from_utf8_lossy(parsed.bytes(&point.measurement));
            let tags: Vec<Label> = parsed
                .point_tags(point)
                .iter()
                .map(|t| Label {
                    name: String::from_utf8_lossy(parsed.bytes(&t.key)).into_owned(),
                    value: String::from_utf8_lossy(parsed.bytes(&t.value)).into_owned(),
                })
                .collect();
            for field in parsed.point_fields(point) {
                let value = match field.value {
                    FieldValue::Float(v) => v,
                    FieldValue::Integer(v) => v as f64,
                    FieldValue::Unsigned(v) => v as f64,
                    _ => continue,
                };
                let mut labels = vec![Label {
                    name: "__name__".into(),
                    value: format!(
                        "{measurement}_{}",
                        String::from_utf8_lossy(parsed.bytes(&field.key))
                    ),
                }];
                labels.extend(tags.iter().cloned());
                series.push(TimeSeries {
                    labels,
                    samples: vec![(point.timestamp / 1_000_000, value)],
                });
            }
        }
        let proto = encode_write_request(&series);
        batch.lines = series.len() as u64;
        batch.values = series.len() as u64;
        batch.raw_bytes = proto.len() as u64;
        batch.body = Bytes::from(snappy(&proto));
    }
}

/// HTTP Basic credentials as an `Authorization` header value.
pub fn basic_authorization(user: &str, password: &str) -> String {
    use base64::Engine;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Failures that stop a load run (per-request failures are counted, not raised).
#[derive(Debug)]
pub enum LoadError {
    Url { url: String, reason: String },
    Input { path: PathBuf, source: io::Error },
    NoData,
    CreateDb { db: String, reason: String },
    Options(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Url { url, reason } => write!(f, "bad --url {url:?}: {reason}"),
            LoadError::Input { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            LoadError::NoData => write!(f, "no line-protocol lines to send"),
            LoadError::CreateDb { db, reason } => {
                write!(f, "CREATE DATABASE {db:?} failed: {reason}")
            }
            LoadError::Options(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Why one request failed.
#[derive(Debug)]
pub enum RequestError {
    Connect(io::Error),
    Wire(WireError),
    Status { status: u16, body: String },
}

impl RequestError {
    /// The key this failure is counted under.
    pub fn kind(&self) -> String {
        match self {
            RequestError::Connect(_) => "connect".into(),
            RequestError::Wire(WireError::Malformed(_)) => "bad_response".into(),
            RequestError::Wire(e) if is_timeout(e) => "timeout".into(),
            RequestError::Wire(_) => "io".into(),
            RequestError::Status { status, .. } => format!("http_{status}"),
        }
    }
}

fn is_timeout(e: &WireError) -> bool {
    matches!(e, WireError::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Connect(e) => write!(f, "connect failed: {e}"),
            RequestError::Wire(e) => write!(f, "{e}"),
            RequestError::Status { status, body } => write!(f, "HTTP {status}: {body}"),
        }
    }
}

impl From<WireError> for RequestError {
    fn from(e: WireError) -> RequestError {
        RequestError::Wire(e)
    }
}

/// A resolved `http[s]://host[:port][/prefix]`.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host_header: String,
    pub base_path: String,
    /// For https: the client configuration and the name the certificate must carry.
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
}

/// Parses and resolves `--url`. An https URL needs `tls_ca`, the PEM file of the CA
/// (or self-signed certificate) the server's certificate is verified against.
pub fn parse_url_with_ca(url: &str, tls_ca: Option<&Path>) -> Result<Target, LoadError> {
    let bad = |reason: &str| LoadError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return parse_url(url);
    };
    let ca = tls_ca.ok_or_else(|| {
        bad("an https URL needs --tls-ca FILE, the CA that signed the server's certificate")
    })?;
    let mut target = parse_url(&format!("http://{rest}"))?;
    if !target.host_header.contains(':') || target.host_header.ends_with(']') {
        target.addr.set_port(443);
    }
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| bad(&format!("{}: {e:?}", ca.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(&format!("{}: {e:?}", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| bad(&format!("{}: {e}", ca.display())))?;
    }
    // ring, as the server (rustls 0.23.48 deprecates it only for lacking post-quantum
    // key exchange).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = target
        .host_header
        .rsplit_once(':')
        .map_or(target.host_header.as_str(), |(h, _)| h)
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let name = rustls_pki_types::ServerName::try_from(host)
        .map_err(|e| bad(&format!("not a server name: {e}")))?;
    target.tls = Some((Arc::new(config), name));
    Ok(target)
}

/// Parses and resolves an http:// `--url`.
pub fn parse_url(url: &str) -> Result<Target, LoadError> {
    let bad = |reason: &str| LoadError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs are supported here"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(bad("missing host"));
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'));
    let with_port = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| bad(&e.to_string()))?
        .next()
        .ok_or_else(|| bad("host resolves to no address"))?;
    Ok(Target {
        addr,
        host_header: authority.to_string(),
        base_path: path.trim_end_matches('/').to_string(),
        tls: None,
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A response as far as the client cares.
pub struct Reply {
    pub status: u16,
    pub retry_after_s: Option<u64>,
    /// The server will not take another request on this connection.
    pub close: bool,
    pub body: Vec<u8>,
}

/// A connection's bytes: plain TCP, or TLS over it.
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// One keep-alive connection.
pub struct Conn {
    io: BufReader<Transport>,
}

impl Conn {
    /// Connects (and for https completes the TLS handshake).
    pub fn open(target: &Target, timeout: Duration) -> Result<Conn, RequestError> {
        let stream =
            TcpStream::connect_timeout(&target.addr, timeout).map_err(RequestError::Connect)?;
        let setup = |s: &TcpStream| {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))
        };
        setup(&stream).map_err(RequestError::Connect)?;
        let transport = match &target.tls {
            None => Transport::Plain(stream),
            Some((config, name)) => {
                let tls = rustls::ClientConnection::new(config.clone(), name.clone())
                    .map_err(|e| RequestError::Connect(io::Error::other(e)))?;
                let mut stream = rustls::StreamOwned::new(tls, stream);
                // The handshake now, so that a request's time is the request's.
                while stream.conn.is_handshaking() {
                    stream
                        .conn
                        .complete_io(&mut stream.sock)
                        .map_err(RequestError::Connect)?;
                }
                Transport::Tls(Box::new(stream))
            }
        };
        Ok(Conn {
            io: BufReader::with_capacity(16 * 1024, transport),
        })
    }

    /// Sends one request and reads its response (skipping 1xx). A server may answer
    /// early (e.g. 404 before reading the body) and close: if sending fails, a response
    /// that already arrived still counts, and the connection is not reused.
    pub fn exchange(&mut self, head: &[u8], body: &[u8]) -> Result<Reply, WireError> {
        if let Err(write_error) = write_message(self.io.get_mut(), head, body) {
            return match self.read_reply() {
                Ok(reply) => Ok(Reply {
                    close: true,
                    ..reply
                }),
                Err(_) => Err(write_error.into()),
            };
        }
        self.read_reply()
    }

    fn read_reply(&mut self) -> Result<Reply, WireError> {
        loop {
            let head = read_head(&mut self.io)?.ok_or(WireError::UnexpectedEof("the response"))?;
            let (http10, status) = parse_status_line(&head.start_line)?;
            let framing = head.response_framing(status);
            let mut body = Vec::new();
            read_body(&mut self.io, framing, &mut body, KEEP_BODY_BYTES)?;
            if (100..200).contains(&status) {
                continue;
            }
            let until_close = framing == crate::http1::Framing::UntilClose;
            return Ok(Reply {
                status,
                retry_after_s: head.retry_after_s,
                close: head.close || until_close || (http10 && !head.keep_alive),
                body,
            });
        }
    }
}

/// `HTTP/1.1 204 No Content` -> (is HTTP/1.0, 204).
fn parse_status_line(line: &str) -> Result<(bool, u16), WireError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(WireError::Malformed(format!("bad status line {line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| WireError::Malformed(format!("bad status line {line:?}")))?;
    Ok((version == "HTTP/1.0", status))
}

/// The fixed part of every /write request head, up to `Content-Length: `.
fn write_head_prefix(target: &Target, opts: &LoadOptions) -> Vec<u8> {
    if opts.prometheus {
        let mut head = format!(
            "POST {}/api/v1/prom/write?db={} HTTP/1.1\r\nHost: {}\r\n\
             User-Agent: shardcore-bench\r\nContent-Type: application/x-protobuf\r\n\
             Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n",
            target.base_path,
            url_encode(&opts.db),
            target.host_header,
        );
        if let Some(auth) = &opts.authorization {
            head.push_str(&format!("Authorization: {auth}\r\n"));
        }
        head.push_str("Content-Length: ");
        return head.into_bytes();
    }
    let mut head = format!(
        "POST {}/write?db={}&precision={}&consistency={} HTTP/1.1\r\nHost: {}\r\n\
         User-Agent: shardcore-bench\r\nContent-Type: text/plain; charset=utf-8\r\n",
        target.base_path,
        url_encode(&opts.db),
        url_encode(&opts.precision),
        url_encode(&opts.consistency),
        target.host_header,
    );
    if opts.gzip {
        head.push_str("Content-Encoding: gzip\r\n");
    }
    if let Some(auth) = &opts.authorization {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    head.push_str("Content-Length: ");
    head.into_bytes()
}

fn finish_head(prefix: &[u8], body_len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(prefix);
    out.extend_from_slice(body_len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Sends `CREATE DATABASE "<db>"` to /query as a form.
pub fn create_database(target: &Target, db: &str, timeout: Duration) -> Result<(), LoadError> {
    let fail = |reason: String| LoadError::CreateDb {
        db: db.to_string(),
        reason,
    };
    let quoted = db.replace('\\', "\\\\").replace('"', "\\\"");
    let body = format!("q={}", url_encode(&format!("CREATE DATABASE \"{quoted}\"")));
    let head = format!(
        "POST {}/query HTTP/1.1\r\nHost: {}\r\nUser-Agent: shardcore-bench\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        target.base_path,
        target.host_header,
        body.len()
    );
    let mut conn = Conn::open(target, timeout).map_err(|e| fail(e.to_string()))?;
    let reply = conn
        .exchange(head.as_bytes(), body.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    if reply.status / 100 != 2 || text.contains("\"error\"") {
        return Err(fail(format!("HTTP {}: {}", reply.status, text.trim())));
    }
    Ok(())
}

/// Batches of the generated cpu-only data set, built before timing.
/// A TSBS data set generator: cpu-only or devops.
pub enum Generator {
    Cpu(CpuGenerator),
    Devops(DevopsGenerator),
}

impl Generator {
    pub fn new(devops: bool, hosts: u64, seed: u64, start_ns: i64) -> Generator {
        if devops {
            Generator::Devops(DevopsGenerator::new(hosts as usize, seed, start_ns))
        } else {
            Generator::Cpu(CpuGenerator::new(hosts as usize, seed, start_ns))
        }
    }

    /// Lines per host per timestamp.
    pub fn lines_per_row(&self) -> u64 {
        match self {
            Generator::Cpu(_) => 1,
            Generator::Devops(_) => crate::devops_gen::LINES_PER_ROW,
        }
    }

    pub fn write_lines(&mut self, n: u64, out: &mut Vec<u8>) {
        match self {
            Generator::Cpu(g) => g.write_lines(n, out),
            Generator::Devops(g) => g.write_lines(n, out),
        }
    }

    /// Field values in `lines` lines just written to `buf`.
    fn values(&self, lines: u64, buf: &[u8]) -> u64 {
        match self {
            Generator::Cpu(_) => lines * FIELDS_PER_LINE,
            Generator::Devops(_) => buf.split(|&b| b == b'\n').map(count_fields).sum(),
        }
    }
}

/// Batches of a generated data set (`hosts` x `rows` timestamps), built before timing.
pub fn generated_batches(
    devops: bool,
    hosts: u64,
    rows: u64,
    seed: u64,
    start_ns: i64,
    batch_lines: u64,
) -> Vec<Batch> {
    let mut generator = Generator::new(devops, hosts, seed, start_ns);
    let mut left = hosts
        .saturating_mul(rows)
        .saturating_mul(generator.lines_per_row());
    let mut batches = Vec::new();
    while left > 0 {
        let n = left.min(batch_lines);
        let mut buf = Vec::with_capacity(n as usize * 360);
        generator.write_lines(n, &mut buf);
        batches.push(Batch {
            raw_bytes: buf.len() as u64,
            values: generator.values(n, &buf),
            body: Bytes::from(buf),
            lines: n,
        });
        left -= n;
    }
    batches
}

/// Splits a line-protocol file into batches of `batch_lines` whole lines (blank lines
/// and `#` comments ride along but are not counted).
pub fn file_batches(path: &PathBuf, batch_lines: u64) -> Result<Vec<Batch>, LoadError> {
    let data = std::fs::read(path).map_err(|source| LoadError::Input {
        path: path.clone(),
        source,
    })?;
    Ok(split_batches(Bytes::from(data), batch_lines))
}

/// Splits `data` into batches of `batch_lines` lines; the slices share `data`.
pub fn split_batches(data: Bytes, batch_lines: u64) -> Vec<Batch> {
    let mut batches = Vec::new();
    let (mut start, mut pos, mut lines, mut values) = (0usize, 0usize, 0u64, 0u64);
    while pos < data.len() {
        let end = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| pos + i + 1);
        let line = data[pos..end].trim_ascii();
        if !line.is_empty() && line[0] != b'#' {
            lines += 1;
            values += count_fields(line);
        }
        pos = end;
        if lines == batch_lines || (pos == data.len() && lines > 0) {
            batches.push(Batch {
                body: data.slice(start..pos),
                lines,
                values,
                raw_bytes: (pos - start) as u64,
            });
            (start, lines, values) = (pos, 0, 0);
        }
    }
    batches
}

/// Number of fields of one line: the unescaped `=` of its field section, outside
/// string values.
pub fn count_fields(line: &[u8]) -> u64 {
    let mut i = 0;
    while i < line.len() && line[i] != b' ' {
        i += if line[i] == b'\\' { 2 } else { 1 };
    }
    let (mut n, mut in_string) = (0u64, false);
    i += 1;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 1,
            b'"' => in_string = !in_string,
            b'=' if !in_string => n += 1,
            b' ' if !in_string => break,
            _ => {}
        }
        i += 1;
    }
    n
}

/// Gzips every batch body in place, on all CPUs.
pub fn gzip_batches(batches: &mut [Batch], level: u32) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = batches.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for part in batches.chunks_mut(chunk) {
            s.spawn(move || {
                for batch in part {
                    batch.body = Bytes::from(gzip(&batch.body, level));
                }
            });
        }
    });
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::new(level.min(9)),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// What the workers share.
struct Shared<'a> {
    batches: &'a [Batch],
    next: AtomicUsize,
    start: Instant,
    target: &'a Target,
    opts: &'a LoadOptions,
    head_prefix: Vec<u8>,
    /// Batches finished (acknowledged or failed) and lines acknowledged: the progress bar.
    done_batches: AtomicUsize,
    done_lines: std::sync::atomic::AtomicU64,
}

impl Shared<'_> {
    /// When batch `i` is due (open loop only).
    fn intended(&self, i: usize) -> Option<Instant> {
        let rate = self.opts.rate?;
        let lines_before = i as f64 * self.opts.batch_lines as f64;
        Some(self.start + Duration::from_secs_f64(lines_before / rate))
    }
}

/// Runs the load and returns the merged tally and the elapsed time.
pub fn run(target: &Target, opts: &LoadOptions, batches: &[Batch]) -> Result<Summary, LoadError> {
    if batches.is_empty() {
        return Err(LoadError::NoData);
    }
    if opts.workers == 0 || opts.batch_lines == 0 {
        return Err(LoadError::Options(
            "--workers and --batch-lines must be at least 1".into(),
        ));
    }
    if opts.create_db {
        create_database(target, &opts.db, opts.timeout)?;
    }
    let shared = Shared {
        batches,
        next: AtomicUsize::new(0),
        start: Instant::now(),
        target,
        opts,
        head_prefix: write_head_prefix(target, opts),
        done_batches: AtomicUsize::new(0),
        done_lines: std::sync::atomic::AtomicU64::new(0),
    };
    let finished = std::sync::atomic::AtomicBool::new(false);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        // A progress bar on stderr, only when it is a terminal.
        if std::io::IsTerminal::is_terminal(&io::stderr()) {
            let (shared, finished) = (&shared, &finished);
            s.spawn(move || progress(shared, finished));
        }
        let handles: Vec<_> = (0..opts.workers)
            .map(|id| {
                let shared = &shared;
                s.spawn(move || worker(shared, id))
            })
            .collect();
        let tallies = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Tally::new()))
            .collect();
        finished.store(true, Ordering::Relaxed);
        tallies
    });
    let mut total = Tally::new();
    let mut end = shared.start;
    for t in tallies {
        end = end.max(t.end.unwrap_or(shared.start));
        total.merge(t);
    }
    Ok(Summary::new(total, end - shared.start, opts))
}

/// Redraws `[#####.....]  45%  1,234,567 lines  512,345 lines/s` on stderr five times a
/// second until the run ends, then clears the line.
fn progress(shared: &Shared<'_>, finished: &std::sync::atomic::AtomicBool) {
    let total = shared.batches.len().max(1);
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let done = shared.done_batches.load(Ordering::Relaxed);
        let lines = shared.done_lines.load(Ordering::Relaxed);
        let secs = shared.start.elapsed().as_secs_f64().max(1e-9);
        let filled = done * 30 / total;
        eprint!(
            "\r[{}{}] {:>3}%  {lines} lines  {:.0} lines/s ",
            "#".repeat(filled),
            ".".repeat(30 - filled),
            done * 100 / total,
            lines as f64 / secs
        );
    }
    eprint!("\r{}\r", " ".repeat(80));
}

/// One worker: takes batches until none are left.
fn worker(shared: &Shared<'_>, id: usize) -> Tally {
    let mut tally = Tally::new();
    let mut conn: Option<Conn> = None;
    let mut head = Vec::with_capacity(shared.head_prefix.len() + 32);
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(batch) = shared.batches.get(i) else {
            break;
        };
        let intended = shared.intended(i);
        if let Some(due) = intended {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let t0 = intended.unwrap_or_else(Instant::now);
        finish_head(&shared.head_prefix, batch.body.len(), &mut head);
        let retries_before = tally.retries;
        let result = send_with_retries(shared, &mut conn, &head, batch, &mut tally);
        let done = Instant::now();
        if shared.opts.log_requests {
            tally.log.push(RequestLog {
                batch: i,
                worker: id,
                start: t0.saturating_duration_since(shared.start),
                latency: done.saturating_duration_since(t0),
                outcome: result.as_ref().map_or_else(|e| e.kind(), |s| s.to_string()),
                retries: tally.retries - retries_before,
            });
        }
        if matches!(result, Ok(status) if (200..300).contains(&status)) {
            shared.done_lines.fetch_add(batch.lines, Ordering::Relaxed);
        }
        shared.done_batches.fetch_add(1, Ordering::Relaxed);
        tally.record(
            batch,
            result.map(|_| ()),
            done.saturating_duration_since(t0),
        );
        tally.end = Some(done);
    }
    tally
}

/// Sends one batch, reconnecting as needed and retrying 503s; returns the final status.
///
/// A kept-alive connection the server closed without saying so fails with EOF, EPIPE
/// or a reset before any response byte; that batch is resent once on a new connection
/// (counted in `reconnects`; a line-protocol write is idempotent).
fn send_with_retries(
    shared: &Shared<'_>,
    conn: &mut Option<Conn>,
    head: &[u8],
    batch: &Batch,
    tally: &mut Tally,
) -> Result<u16, RequestError> {
    let (mut attempt, mut resent) = (0u32, false);
    loop {
        let reused = conn.is_some();
        let c = match conn {
            Some(c) => c,
            None => conn.insert(Conn::open(shared.target, shared.opts.timeout)?),
        };
        tally.requests += 1;
        tally.wire_bytes += (head.len() + batch.body.len()) as u64;
        let reply = match c.exchange(head, &batch.body) {
            Ok(r) => r,
            Err(e) => {
                *conn = None;
                if reused && !resent && is_stale_connection(&e) {
                    resent = true;
                    tally.reconnects += 1;
                    continue;
                }
                return Err(e.into());
            }
        };
        if reply.close {
            *conn = None;
        }
        if reply.status == 503 && attempt < shared.opts.max_retries {
            attempt += 1;
            tally.retries += 1;
            let wait = reply.retry_after_s.unwrap_or(1).min(MAX_RETRY_AFTER_S);
            std::thread::sleep(Duration::from_secs(wait));
            continue;
        }
        if reply.status / 100 == 2 {
            return Ok(reply.status);
        }
        let body = String::from_utf8_lossy(&reply.body).trim().to_string();
        return Err(RequestError::Status {
            status: reply.status,
            body,
        });
    }
}

/// The peer had closed the connection before answering.
fn is_stale_connection(e: &WireError) -> bool {
    use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    match e {
        WireError::UnexpectedEof(_) => true,
        WireError::Io(io) => matches!(
            io.kind(),
            BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof
        ),
        WireError::Malformed(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted() {
        assert_eq!(count_fields(b"cpu,host=a u=1,s=2i 5"), 2);
        assert_eq!(count_fields(b"m\\ x,t=a\\ b f=\"a=b c\",g=1"), 2);
        assert_eq!(count_fields(b"junk"), 0);
    }

    #[test]
    fn batches_keep_whole_lines() {
        let data = Bytes::from_static(b"a v=1 1\n\nb v=1,w=2 2\n# c\nc v=3 3");
        let batches = split_batches(data, 2);
        assert_eq!(batches.len(), 2);
        assert_eq!((batches[0].lines, batches[0].values), (2, 3));
        assert_eq!(&batches[1].body[..], b"# c\nc v=3 3");
        assert_eq!(batches[1].lines, 1);
    }

    #[test]
    fn urls_parse() {
        let t = parse_url("http://127.0.0.1:8086/").unwrap();
        assert_eq!((t.addr.port(), t.base_path.as_str()), (8086, ""));
        assert_eq!(parse_url("http://127.0.0.1/x/").unwrap().base_path, "/x");
        assert!(parse_url("https://127.0.0.1").is_err());
        // https needs the CA to verify the server with.
        let e = parse_url_with_ca("https://127.0.0.1:8443", None).unwrap_err();
        assert!(e.to_string().contains("--tls-ca"), "{e}");
        assert!(parse_url_with_ca("http://127.0.0.1:8086", None)
            .unwrap()
            .tls
            .is_none());
    }

    /// A test server: answers every request with 204 after `delay(n)` for the n-th
    /// request (one thread per connection, keep-alive).
    fn sleepy_server(delay: fn(usize) -> Duration) -> SocketAddr {
        use std::io::{BufRead, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = std::sync::Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let served = served.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    loop {
                        let mut len = 0usize;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let lower = line.to_ascii_lowercase();
                            if let Some(v) = lower.strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap();
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; len];
                        reader.read_exact(&mut body).unwrap();
                        let n = served.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(delay(n));
                        if writer
                            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn options(workers: usize, rate: Option<f64>) -> LoadOptions {
        LoadOptions {
            db: "db".into(),
            precision: "ns".into(),
            consistency: "one".into(),
            workers,
            batch_lines: 1,
            rate,
            max_retries: 0,
            gzip: false,
            create_db: false,
            timeout: Duration::from_secs(10),
            log_requests: false,
            authorization: None,
            prometheus: false,
        }
    }

    fn batches(n: usize) -> Vec<Batch> {
        let data: String = (0..n).map(|i| format!("m v={i} {i}\n")).collect();
        split_batches(Bytes::from(data), 1)
    }

    fn target(addr: SocketAddr) -> Target {
        parse_url(&format!("http://{addr}")).unwrap()
    }

    #[test]
    fn closed_loop_latency_is_the_servers_time() {
        let addr = sleepy_server(|_| Duration::from_millis(20));
        let summary = run(&target(addr), &options(2, None), &batches(30)).unwrap();
        let h = &summary.tally.latency;
        assert_eq!(h.len(), 30);
        // 20 ms of sleep plus loopback and scheduling (a busy CI machine adds some).
        for q in [0.5, 0.99] {
            let us = h.value_at_quantile(q);
            assert!((20_000..40_000).contains(&us), "p{q}: {us} µs");
        }
    }

    #[test]
    fn open_loop_counts_queueing_behind_a_stall() {
        // 100 batches at 200/s on one connection; request 10 stalls 500 ms. Closed-loop
        // accounting would show one slow request; open-loop (from each batch's intended
        // send time) shows the ~100 batches due during the stall waiting behind it.
        let addr = sleepy_server(|n| Duration::from_millis(if n == 10 { 500 } else { 1 }));
        let summary = run(&target(addr), &options(1, Some(200.0)), &batches(100)).unwrap();
        let h = &summary.tally.latency;
        assert_eq!(h.len(), 100);
        let p50 = h.value_at_quantile(0.5);
        assert!(
            p50 >= 100_000,
            "half the batches queued behind the stall: p50 {p50} µs"
        );
        assert!(
            h.max() >= 490_000,
            "the stalled request: max {} µs",
            h.max()
        );
        // And without the stall, the same schedule has millisecond latencies.
        let addr = sleepy_server(|_| Duration::from_millis(1));
        let summary = run(&target(addr), &options(1, Some(200.0)), &batches(100)).unwrap();
        assert!(summary.tally.latency.value_at_quantile(0.99) < 50_000);
    }
}
