//! TLS on the HTTP API (`[http] https-enabled`) with real certificates made by the
//! `openssl` command: HTTPS requests verified against the certificate, the `influx`
//! CLI with `-ssl -unsafeSsl` and credentials, plain HTTP on the HTTPS port, a
//! certificate rotated by SIGHUP (and a failed reload that keeps the old one), and a
//! bad certificate file at start-up. Skips, saying why, without `openssl`.

mod common;

use common::{temp_dir, urlencode, Node};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// `openssl req -x509` with a new P-256 key for `subject`, writing `key` and `crt`,
/// plus `extra` arguments; the error output when it fails.
fn openssl_req(
    subject: &str,
    key: &Path,
    crt: &Path,
    extra: &[&std::ffi::OsStr],
) -> Result<(), String> {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", subject])
        .args(extra)
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(crt)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A test CA in `dir` (`ca.crt`, `ca.key`); None when openssl cannot run.
fn make_ca(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    match openssl_req("/CN=shardcore test CA", &key, &crt, &[]) {
        Ok(()) => Some((crt, key)),
        Err(e) => {
            eprintln!("openssl failed: {e}");
            None
        }
    }
}

/// A certificate for 127.0.0.1 signed by `ca` and its key, in `dir` as `name.crt`,
/// `name.key` and `name.pem` (both).
fn make_certificate(
    dir: &Path,
    name: &str,
    ca: &(PathBuf, PathBuf),
) -> (PathBuf, PathBuf, PathBuf) {
    let (crt, key, pem) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pem")),
    );
    let extra: Vec<&std::ffi::OsStr> = [
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-CA",
    ]
    .iter()
    .map(std::ffi::OsStr::new)
    .chain([
        ca.0.as_os_str(),
        std::ffi::OsStr::new("-CAkey"),
        ca.1.as_os_str(),
    ])
    .collect();
    if let Err(e) = openssl_req(&format!("/CN={name}"), &key, &crt, &extra) {
        panic!("openssl: {e}");
    }
    let mut both = std::fs::read(&crt).unwrap();
    both.extend(std::fs::read(&key).unwrap());
    std::fs::write(&pem, both).unwrap();
    (crt, key, pem)
}

fn https_node(dir: &Path, certificate: &Path, key: Option<&Path>, extra: &str) -> Node {
    let key = key.map_or(String::new(), |k| k.display().to_string());
    Node::start_with_config(
        &dir.join("data"),
        &format!(
            "[http]\nhttps-enabled = true\nhttps-certificate = \"{}\"\nhttps-private-key = \"{key}\"\n{extra}",
            certificate.display()
        ),
    )
}

/// One HTTPS request, verifying the server against `trusted` (its certificate): the
/// status, the body, and the certificate the server presented.
fn https(
    addr: SocketAddr,
    trusted: &Path,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(trusted).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let presented = conn.peer_certificates().unwrap()[0].to_vec();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body, presented)
}

fn der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

#[test]
fn https_api_serves_verified_tls_and_rotates_on_sighup() {
    let dir = temp_dir();
    let Some(ca) = make_ca(dir.path()) else {
        eprintln!("SKIPPED: openssl cannot make a certificate here");
        return;
    };
    let (crt, key, _) = make_certificate(dir.path(), "first", &ca);
    let node = https_node(dir.path(), &crt, Some(&key), "");
    let trusted = ca.0.clone();
    let (status, _, presented) = https(node.addr, &trusted, "GET", "/ping", b"");
    assert_eq!(status, 204);
    assert_eq!(presented, der(&crt));
    let q = format!("/query?q={}", urlencode("CREATE DATABASE db"));
    assert_eq!(https(node.addr, &trusted, "POST", &q, b"").0, 200);
    let (status, body, _) = https(
        node.addr,
        &trusted,
        "POST",
        "/write?db=db",
        b"cpu value=1 1000000000",
    );
    assert_eq!(status, 204, "{body}");
    let q = format!("/query?db=db&q={}", urlencode("SELECT value FROM cpu"));
    let (status, body, _) = https(node.addr, &trusted, "GET", &q, b"");
    assert_eq!(status, 200);
    assert!(body.contains("[\"1970-01-01T00:00:01Z\",1]"), "{body}");
    // Plain HTTP on the HTTPS port: Go's answer.
    let r = common::http(node.addr, "GET", "/ping", &[], b"").unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "Client sent an HTTP request to an HTTPS server.\n")
    );
    // A new certificate in the same files, then SIGHUP: new connections get it.
    let (second_crt, second_key, _) = make_certificate(dir.path(), "second", &ca);
    std::fs::copy(&second_crt, &crt).unwrap();
    std::fs::copy(&second_key, &key).unwrap();
    let pid = node.child.id() as i32;
    // SAFETY: signalling the node process this test started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    common::eventually(
        Duration::from_secs(10),
        "the new certificate served",
        || https(node.addr, &trusted, "GET", "/ping", b"").2 == der(&second_crt),
    );
    // A reload that fails keeps the certificate in use.
    std::fs::write(&crt, "garbage").unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    common::eventually(Duration::from_secs(10), "the failed reload logged", || {
        node.log()
            .contains("could not reload the HTTPS certificate")
    });
    let (status, _, presented) = https(node.addr, &trusted, "GET", "/ping", b"");
    assert_eq!((status, presented), (204, der(&second_crt)));
}

#[test]
fn influx_cli_over_tls_with_credentials() {
    let dir = temp_dir();
    let Some(ca) = make_ca(dir.path()) else {
        eprintln!("SKIPPED: openssl cannot make a certificate here");
        return;
    };
    let (_, _, pem) = make_certificate(dir.path(), "cli", &ca);
    let cli = Command::new("sh")
        .args(["-c", "command -v influx"])
        .output()
        .unwrap();
    let cli = String::from_utf8_lossy(&cli.stdout).trim().to_string();
    if cli.is_empty() {
        eprintln!("SKIPPED: the `influx` CLI is not installed (apt-get install influxdb-client)");
        return;
    }
    // One combined PEM file (no https-private-key), as InfluxDB reads it.
    let node = https_node(dir.path(), &pem, None, "auth-enabled = true\n");
    let influx = |args: &[&str]| {
        let out = Command::new(&cli)
            .args(["-ssl", "-unsafeSsl", "-host", "127.0.0.1"])
            .args(["-port", &node.addr.port().to_string()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = influx(&[
        "-execute",
        "CREATE USER admin WITH PASSWORD 'pw' WITH ALL PRIVILEGES",
    ]);
    assert!(ok, "{text}");
    let as_admin = |args: &[&str]| {
        let mut all = vec![
            "-username",
            "admin",
            "-password",
            "pw",
            "-database",
            "clidb",
        ];
        all.extend_from_slice(args);
        influx(&all)
    };
    for statement in ["CREATE DATABASE clidb", "INSERT cpu,host=a value=1.5"] {
        let (ok, text) = as_admin(&["-execute", statement]);
        assert!(ok, "{statement}: {text}");
    }
    let (ok, text) = as_admin(&["-format", "csv", "-execute", "SELECT value FROM cpu"]);
    assert!(ok && text.contains(",1.5"), "{text}");
    let (_, text) = influx(&[
        "-username",
        "admin",
        "-password",
        "nope",
        "-execute",
        "SHOW DATABASES",
    ]);
    assert!(text.contains("authorization failed"), "{text}");
}

#[test]
fn a_bad_certificate_stops_the_node_with_its_name() {
    let dir = temp_dir();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nhttps-enabled = true\nhttps-certificate = \"{}\"\n",
            junk.display()
        ),
    )
    .unwrap();
    let out = Command::new(common::BIN)
        .args([
            "serve",
            "--cores",
            "1",
            "--http-bind",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("https-certificate") && text.contains("junk.pem"),
        "{text}"
    );
}

/// `[cluster] tls-enabled`: a 3-node cluster whose nodes talk mutual TLS (each node's
/// certificate signed by the cluster's CA); writes, replication and queries across it
/// work, and a peer speaking plain TCP to a cluster port is refused.
#[test]
fn cluster_traffic_over_mutual_tls() {
    let dir = temp_dir();
    let Some(ca) = make_ca(dir.path()) else {
        eprintln!("SKIPPED: openssl cannot make a certificate here");
        return;
    };
    let (crt, key, _) = make_certificate(dir.path(), "node", &ca);
    let mut cluster = common::Cluster::start(
        3,
        1,
        &format!(
            "meta-sync-interval-ms = 200\ntls-enabled = true\ntls-certificate = \"{}\"\ntls-private-key = \"{}\"\ntls-ca-certificate = \"{}\"\n",
            crt.display(),
            key.display(),
            ca.0.display()
        ),
    );
    let r = cluster
        .node(0)
        .query("CREATE DATABASE db WITH REPLICATION 2");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut lines = String::new();
    for i in 0..300 {
        lines.push_str(&format!("cpu,host=h{i} value={i} {}\n", 1_000_000_000 + i));
    }
    common::eventually(
        Duration::from_secs(20),
        "db known on node 1's peers",
        || {
            cluster
                .node(0)
                .write("db=db&consistency=all", lines.as_bytes())
                .status
                == 204
        },
    );
    common::eventually(Duration::from_secs(20), "node 3 reads every point", || {
        let r = cluster
            .node(2)
            .query_on("db", "SELECT count(value) FROM cpu");
        r.text().contains("[\"1970-01-01T00:00:00Z\",300]")
    });
    // Plain TCP to a cluster port: refused (no TLS handshake), counted.
    let port = cluster.cluster_ports[1];
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = plain.write_all(b"SHARDCORE hello, in clear\r\n");
    let mut buf = [0u8; 64];
    // Closed, or a TLS alert record (type 21) before the close: no frame of ours.
    match plain.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(_) => assert_eq!(buf[0], 21, "the plain peer got {buf:?}"),
    }
    common::eventually(Duration::from_secs(10), "the refusal counted", || {
        let vars = cluster
            .node(1)
            .request("GET", "/debug/vars", &[], b"")
            .json();
        vars["cluster"]["rejectedConnections"].as_u64().unwrap_or(0) >= 1
    });
    // A node restarted rejoins over TLS.
    cluster.node_mut(2).kill();
    cluster.start_node(2);
    common::eventually(Duration::from_secs(20), "node 3 back", || {
        let r = cluster
            .node(2)
            .query_on("db", "SELECT count(value) FROM cpu");
        r.text().contains("[\"1970-01-01T00:00:00Z\",300]")
    });
}

/// The Python `influxdb` client (what many InfluxDB 1.x users script with) over HTTPS
/// with credentials: `ssl=True, verify_ssl=False`, `username`/`password`, its default
/// settings otherwise. Skips, saying why, when the package is not installed
/// (`pip install influxdb`; `.ci/run` does this).
#[test]
fn python_influxdb_client_over_tls_with_credentials() {
    if !common::python_has("influxdb", "pip install influxdb") {
        return;
    }
    let dir = temp_dir();
    let Some(ca) = make_ca(dir.path()) else {
        eprintln!("SKIPPED: openssl cannot make a certificate here");
        return;
    };
    let (crt, key, _) = make_certificate(dir.path(), "py", &ca);
    let node = https_node(dir.path(), &crt, Some(&key), "auth-enabled = true\n");
    let script = r#"
import sys, warnings
warnings.filterwarnings("ignore")
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError
port = int(sys.argv[1])
boot = InfluxDBClient("127.0.0.1", port, ssl=True, verify_ssl=False)
boot.create_user("admin", "adminpw", admin=True)
admin = InfluxDBClient("127.0.0.1", port, "admin", "adminpw", ssl=True, verify_ssl=False)
admin.create_database("pydb")
admin.create_user("bob", "bobpw")
admin.grant_privilege("read", "pydb", "bob")
admin.write_points([{"measurement": "cpu", "tags": {"host": "a"}, "time": 1000000000, "fields": {"value": 1.5}}], database="pydb", time_precision="n")
users = sorted((u["user"], u["admin"]) for u in admin.get_list_users())
assert users == [("admin", True), ("bob", False)], users
bob = InfluxDBClient("127.0.0.1", port, "bob", "bobpw", "pydb", ssl=True, verify_ssl=False)
points = list(bob.query("SELECT value FROM cpu").get_points())
assert points == [{"time": "1970-01-01T00:00:01Z", "value": 1.5}], points
try:
    bob.write_points([{"measurement": "cpu", "fields": {"value": 2.0}}])
    raise SystemExit("bob wrote without WRITE")
except InfluxDBClientError as e:
    assert e.code == 403 and "not authorized to write" in str(e), e
wrong = InfluxDBClient("127.0.0.1", port, "bob", "nope", "pydb", ssl=True, verify_ssl=False)
try:
    wrong.query("SHOW MEASUREMENTS")
    raise SystemExit("a wrong password was let in")
except InfluxDBClientError as e:
    assert e.code == 401 and "authorization failed" in str(e), e
print("ok")
"#;
    common::run_python(script, &[&node.addr.port().to_string()]);
}
