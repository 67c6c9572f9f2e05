//! The `influx` CLI from Debian's influxdb-client package against a real node:
//! CREATE DATABASE, INSERT, SELECT and SHOW must work unchanged. Skips, saying why, when the CLI
//! is not installed (`.ci/run` installs it).

mod common;

use common::{temp_dir, Node};
use std::process::Command;

fn influx_cli() -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", "command -v influx"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!path.is_empty()).then_some(path)
}

fn influx(node: &Node, args: &[&str]) -> std::process::Output {
    Command::new(influx_cli().unwrap())
        .args(["-host", "127.0.0.1", "-port", &node.addr.port().to_string()])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn influx_cli_creates_a_database_and_inserts() {
    let Some(path) = influx_cli() else {
        eprintln!("SKIPPED: the `influx` CLI is not installed (apt-get install influxdb-client)");
        return;
    };
    eprintln!("using {path}");
    let dir = temp_dir();
    let node = Node::start(dir.path());
    let out = influx(&node, &["-execute", "CREATE DATABASE clidb"]);
    assert!(out.status.success(), "{out:?}");
    let out = influx(
        &node,
        &[
            "-database",
            "clidb",
            "-execute",
            "INSERT cpu,host=a value=1.5",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = influx(
        &node,
        &[
            "-database",
            "clidb",
            "-precision",
            "s",
            "-execute",
            "INSERT cpu,host=b value=2i 1600000000",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = influx(&node, &["-execute", "SHOW DATABASES", "-format", "json"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("clidb"));
    let mut points = node.dump("clidb", "");
    points.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(points.len(), 2);
    assert_eq!(points[0].0, "cpu,host=a");
    assert_eq!(points[0].3, serde_json::json!(1.5));
    assert_eq!(points[1].2, 1_600_000_000_000_000_000);
    // A bad INSERT reports the server's error and stores nothing.
    let out = influx(
        &node,
        &["-database", "clidb", "-execute", "INSERT cpu,host=c value="],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("unable to parse"), "{text}");
    assert_eq!(node.dump("clidb", "").len(), 2);
    // Queries through the CLI: its column output and its JSON output.
    let out = influx(
        &node,
        &[
            "-database",
            "clidb",
            "-precision",
            "rfc3339",
            "-execute",
            "SELECT value FROM cpu WHERE host = 'b'",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("name: cpu"), "{text}");
    assert!(text.contains("2020-09-13T12:26:40Z 2"), "{text}");
    let out = influx(
        &node,
        &[
            "-database",
            "clidb",
            "-format",
            "json",
            "-execute",
            "SHOW TAG VALUES WITH KEY = host",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["results"][0]["series"][0]["values"],
        serde_json::json!([["host", "a"], ["host", "b"]])
    );
}
