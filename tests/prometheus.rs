//! Prometheus remote storage with the real `prometheus` binary (Debian's package) as
//! the client: one Prometheus scrapes itself and remote-writes into ShardCore; a
//! second one, with nothing to scrape, answers queries only through remote read from
//! ShardCore. Skips, saying why, when `prometheus` is not installed (`.ci/run`
//! installs it).

mod common;

use common::{temp_dir, urlencode, Node};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", "command -v prometheus"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!path.is_empty()).then_some(path)
}

/// Starts Prometheus with `config` (YAML; `PORT` stands for its own port).
fn start_prometheus(bin: &str, config: &str) -> Prometheus {
    let dir = temp_dir();
    let port = common::free_port_pair();
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config.replace("PORT", &port.to_string())).unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run prometheus");
    Prometheus {
        child,
        port,
        _dir: dir,
    }
}

#[test]
fn prometheus_remote_write_and_read_round_trip() {
    let Some(bin) = prometheus_binary() else {
        eprintln!("SKIPPED: prometheus is not installed (apt-get install prometheus)");
        return;
    };
    let dir = temp_dir();
    let node = Node::start(dir.path());
    node.create_database("prom");
    let url = format!("http://{}", node.addr);
    let _writer = start_prometheus(
        &bin,
        &format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:PORT']\n\
             remote_write:\n  - url: {url}/api/v1/prom/write?db=prom\n    queue_config:\n      batch_send_deadline: 1s\n"
        ),
    );
    // Samples arrive: `up` of the job, with its labels as tags.
    common::eventually(Duration::from_secs(60), "samples of `up` written", || {
        let r = node.query_on("prom", "SELECT value FROM up WHERE job = 'self'");
        r.text().contains(",1]")
    });
    let r = node.query_on("prom", "SHOW TAG KEYS FROM up");
    let tags = r.text();
    for key in ["__name__", "instance", "job"] {
        assert!(tags.contains(&format!("[\"{key}\"]")), "{tags}");
    }
    // A second Prometheus that scrapes nothing sees them through remote read.
    let reader = start_prometheus(
        &bin,
        &format!(
            "global:\n  scrape_interval: 1h\n\
             remote_read:\n  - url: {url}/api/v1/prom/read?db=prom\n    read_recent: true\n"
        ),
    );
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], reader.port));
    common::eventually(
        Duration::from_secs(60),
        "`up` read back through Prometheus",
        || {
            let path = format!("/api/v1/query?query={}", urlencode("up{job=\"self\"}"));
            match common::http(api, "GET", &path, &[], b"") {
                Ok(r) => {
                    let t = r.text();
                    r.status == 200 && t.contains("\"job\":\"self\"") && t.contains("\"1\"]")
                }
                Err(_) => false,
            }
        },
    );
    // A regex matcher on the name, and a negative one on a label.
    let path = format!(
        "/api/v1/query?query={}",
        urlencode("{__name__=~\"u.\",job!=\"other\"}")
    );
    let r = common::http(api, "GET", &path, &[], b"").unwrap();
    assert!(r.text().contains("\"__name__\":\"up\""), "{}", r.text());
}
