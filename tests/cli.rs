//! The command line: `shardcore config`, bad configuration, and start-up errors.

mod common;

use common::{temp_dir, BIN};
use std::process::Command;

#[test]
fn config_prints_the_documented_defaults() {
    let out = Command::new(BIN).arg("config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bind-address = \"127.0.0.1:8086\""));
    assert!(text.contains("data-dir = \"./shardcore-data\""));
    assert!(text.contains("max-body-size-bytes = 25000000"));
    // Every key line is preceded by a comment.
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains(" = ") && !l.starts_with('#') {
            assert!(lines[i - 1].starts_with('#'), "undocumented key: {l}");
        }
    }
    // And it is a valid config file as printed.
    let dir = temp_dir();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--cores",
            "1",
            "--http-bind",
            "not-an-address",
            "--config",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.bind-address"));
}

#[test]
fn bad_config_names_the_key_and_exits_2() {
    let dir = temp_dir();
    for (text, key) in [
        ("[http]\nbind-adress = \"x\"\n", "bind-adress"),
        ("[storage]\nwal-fsync-delay-ms = -1\n", "wal-fsync-delay-ms"),
        ("cores = 100000\n", "cores"),
        ("[runtime]\nring-depth = 100\n", "runtime.ring-depth"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{text}: {err}");
    }
    let out = Command::new(BIN)
        .args(["serve", "--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn port_in_use_is_a_clear_start_up_error() {
    let dir = temp_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["serve", "--cores", "1", "--http-bind", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
}

/// A second node given a running node's HTTP or cluster port fails to start instead of
/// silently sharing the port (glommio's own bind sets SO_REUSEPORT; ours does not).
#[test]
fn a_running_nodes_ports_cannot_be_shared() {
    let cluster = common::Cluster::start(2, 1, "");
    let running = cluster.node(0);
    let dir = temp_dir();
    let out = Command::new(BIN)
        .args(["serve", "--cores", "1", "--http-bind"])
        .arg(running.addr.to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");

    // Same config file (so the same cluster port), another data dir and HTTP port.
    let out = Command::new(BIN)
        .args([
            "serve",
            "--cores",
            "1",
            "--http-bind",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&cluster.configs[0])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen for cluster peers"), "{err}");
}
