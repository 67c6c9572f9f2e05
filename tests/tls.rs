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

/// A test CA in `dir` (`ca.crt`, `ca.key`); None when openssl cannot run.
fn make_ca(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=shardcore test CA"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("openssl failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some((crt, key))
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
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-CA")
        .arg(&ca.0)
        .arg("-CAkey")
        .arg(&ca.1)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let (ok, text) = influx(&[
        "-username",
        "admin",
        "-password",
        "pw",
        "-execute",
        "CREATE DATABASE clidb",
    ]);
    assert!(ok, "{text}");
    let (ok, text) = influx(&[
        "-username",
        "admin",
        "-password",
        "pw",
        "-database",
        "clidb",
        "-execute",
        "INSERT cpu,host=a value=1.5",
    ]);
    assert!(ok, "{text}");
    let (ok, text) = influx(&[
        "-username",
        "admin",
        "-password",
        "pw",
        "-database",
        "clidb",
        "-format",
        "csv",
        "-execute",
        "SELECT value FROM cpu",
    ]);
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
