//! The InfluxDB 1.x HTTP API of a real node process: /ping, /health, /write, /query DDL.

mod common;

use common::{gzip, temp_dir, Node};
use serde_json::json;

#[test]
fn ping_and_health_answer_like_influxdb() {
    let dir = temp_dir();
    let node = Node::start(dir.path());
    let r = node.request("GET", "/ping", &[], b"");
    assert_eq!(r.status, 204);
    assert!(r.header("X-Influxdb-Version").unwrap().starts_with("1."));
    assert!(r.header("Request-Id").is_some());
    let r = node.request("HEAD", "/ping", &[], b"");
    assert_eq!(r.status, 204);
    let r = node.request("GET", "/ping?verbose=true", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.json()["version"].as_str().unwrap().starts_with("1."));
    let r = node.request("GET", "/health", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "pass");
    let r = node.request("GET", "/nope", &[], b"");
    assert_eq!(r.status, 404);
}

#[test]
fn ddl_statements_and_their_answers() {
    let dir = temp_dir();
    let node = Node::start(dir.path());
    let r = node.query("SHOW DATABASES");
    assert_eq!(
        r.json(),
        json!({"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"]}]}]})
    );
    let r = node.query("CREATE DATABASE db1; CREATE DATABASE \"db-2\" WITH DURATION 3d REPLICATION 1 SHARD DURATION 2h NAME short");
    assert_eq!(
        r.json(),
        json!({"results":[{"statement_id":0},{"statement_id":1}]})
    );
    // Exactly InfluxDB's bytes for the same statement.
    let r = node.query("SHOW DATABASES");
    assert_eq!(
        r.text(),
        "{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"databases\",\"columns\":[\"name\"],\"values\":[[\"db-2\"],[\"db1\"]]}]}]}\n"
    );
    let r = node.query("SHOW RETENTION POLICIES ON \"db-2\"");
    assert_eq!(
        r.json(),
        json!({"results":[{"statement_id":0,"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],"values":[["short","72h0m0s","2h0m0s",1,true]]}]}]})
    );
    let r = node.query("CREATE RETENTION POLICY week ON db1 DURATION 1w REPLICATION 1 DEFAULT");
    assert_eq!(r.json(), json!({"results":[{"statement_id":0}]}));
    let r = node.query("ALTER RETENTION POLICY week ON db1 DURATION 2w SHARD DURATION 1d");
    assert_eq!(r.json(), json!({"results":[{"statement_id":0}]}));
    let r = node.request("GET", "/query?db=db1&q=SHOW+RETENTION+POLICIES", &[], b"");
    assert_eq!(
        r.json(),
        json!({"results":[{"statement_id":0,"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],"values":[["autogen","0s","168h0m0s",1,false],["week","336h0m0s","24h0m0s",1,true]]}]}]})
    );
    // Statement errors: InfluxDB's wording, later statements not run; with statements
    // after it, the failure reads "not executed", as InfluxDB answers.
    let r = node.query("CREATE RETENTION POLICY tiny ON db1 DURATION 30m REPLICATION 1");
    assert_eq!(
        r.json(),
        json!({"results":[{"statement_id":0,"error":"retention policy duration must be at least 1h0m0s"}]})
    );
    let r = node
        .query("CREATE RETENTION POLICY tiny ON db1 DURATION 30m REPLICATION 1; SHOW DATABASES");
    assert_eq!(
        r.json(),
        json!({"results":[{"statement_id":0,"error":"not executed"}]})
    );
    let r = node.query("SHOW RETENTION POLICIES ON nope");
    assert_eq!(r.json()["results"][0]["error"], "database not found: nope");
    // Parse errors are a 400 with position.
    let r = node.query("CREATE DATABSE x");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error":"error parsing query: found DATABSE, expected CONTINUOUS, DATABASE, USER, RETENTION, SUBSCRIPTION at line 1, char 8"})
    );
    let r = node.request("GET", "/query", &[], b"");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error":"missing required parameter \"q\""})
    );
    let r = node.query("DROP RETENTION POLICY week ON db1; DROP DATABASE db1; DROP DATABASE db1");
    assert_eq!(
        r.json(),
        json!({"results":[{"statement_id":0},{"statement_id":1},{"statement_id":2}]})
    );
    let r = node.query("SHOW DATABASES");
    assert_eq!(
        r.json()["results"][0]["series"][0]["values"],
        json!([["db-2"]])
    );
    let r = node.query("KILL QUERY 1");
    assert_eq!(r.json()["results"][0]["error"], "no such query id: 1");
    // With auth off, user statements work without a login (as InfluxDB's).
    let r = node.query("GRANT ALL ON db TO someone");
    assert_eq!(r.json()["results"][0]["error"], "user not found");
}

#[test]
fn write_every_precision_and_gzip() {
    let dir = temp_dir();
    let node = Node::start(dir.path());
    node.create_database("db");
    let base_s: i64 = 1_600_000_000;
    let cases = [
        ("n", base_s * 1_000_000_000, 1),
        ("ns", base_s * 1_000_000_000 + 1, 1),
        ("u", base_s * 1_000_000 + 2, 1_000),
        ("us", base_s * 1_000_000 + 3, 1_000),
        ("ms", base_s * 1_000 + 4, 1_000_000),
        ("s", base_s + 5, 1_000_000_000),
        ("m", base_s / 60 + 6, 60_000_000_000),
        ("h", base_s / 3600 + 7, 3_600_000_000_000),
    ];
    for (p, ts, _) in &cases {
        let body = format!("prec,p={p} v=1 {ts}\n");
        let r = node.write(&format!("db=db&precision={p}"), body.as_bytes());
        assert_eq!(r.status, 204, "{p}: {}", r.text());
    }
    let points = node.dump("db", "&measurement=prec");
    assert_eq!(points.len(), cases.len());
    for (p, ts, mult) in &cases {
        let key = format!("prec,p={p}");
        let got = points.iter().find(|x| x.0 == key).unwrap();
        assert_eq!(got.2, ts * mult, "precision {p}");
    }
    // gzip body, and a point without a timestamp gets the server's time.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let body = gzip(b"zipped,host=a value=42i\nzipped,host=b value=43i 1000\n");
    let r = node.request(
        "POST",
        "/write?db=db",
        &[("Content-Encoding", "gzip")],
        &body,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let mut points = node.dump("db", "&measurement=zipped");
    points.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(points.len(), 2);
    assert_eq!(points[0].0, "zipped,host=a");
    assert_eq!(points[0].3, json!(42));
    assert!(points[0].2 >= before);
    assert_eq!(points[1].0, "zipped,host=b");
    assert_eq!(points[1].2, 1000);
    // A corrupt gzip body is a 400, not a crash.
    let r = node.request(
        "POST",
        "/write?db=db",
        &[("Content-Encoding", "gzip")],
        b"not gzip at all",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn bad_lines_are_named_and_good_lines_kept() {
    let dir = temp_dir();
    let node = Node::start(dir.path());
    node.create_database("db");
    let body = b"m,t=1 v=1 10\nm,t=2 v= 20\nm,t=3 v=3 30\n# comment\n\nm,t=4 v=4 bad\nm,t=5 s=\"s\" 50\r\n";
    let r = node.write("db=db", body);
    assert_eq!(r.status, 400);
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(err.starts_with("partial write: "), "{err}");
    assert!(err.contains("unable to parse 'm,t=2 v= 20'"), "{err}");
    // InfluxDB's text: the line is quoted, no line number follows.
    assert!(!err.contains("(line "), "{err}");
    assert!(
        err.contains("unable to parse 'm,t=4 v=4 bad': bad timestamp"),
        "{err}"
    );
    assert!(err.ends_with("dropped=0"), "{err}");
    let keys: Vec<String> = node.dump("db", "").into_iter().map(|p| p.0).collect();
    assert_eq!(keys, vec!["m,t=1", "m,t=3", "m,t=5"]);
    // Nothing parsed: InfluxDB's plain "unable to parse" answer.
    let r = node.write("db=db", b"garbage\n");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("unable to parse 'garbage': "));
}

#[test]
fn write_errors_match_influxdb() {
    let dir = temp_dir();
    let node = Node::start_with(dir.path(), &["--cores", "2"]);
    node.create_database("db");
    let r = node.write("db=missing", b"m v=1");
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!({"error":"database not found: \"missing\""}));
    let r = node.write("", b"m v=1");
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), json!({"error":"database is required"}));
    let r = node.write("db=db&consistency=most", b"m v=1");
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), json!({"error":"invalid consistency level"}));
    for c in ["any", "one", "quorum", "all"] {
        let r = node.write(&format!("db=db&consistency={c}&u=user&p=pass"), b"m v=1 1");
        assert_eq!(r.status, 204, "{c}");
    }
    let r = node.write("db=db&rp=nope", b"m v=1");
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json(),
        json!({"error":"retention policy not found: nope"})
    );
    let r = node.request("GET", "/write?db=db", &[], b"");
    assert_eq!(r.status, 405);
    // Field type conflict within a shard: 400 naming the field; the other point is kept.
    let r = node.write("db=db", b"conf v=1 1\n");
    assert_eq!(r.status, 204);
    let r = node.write("db=db", b"conf v=2i 2\nconf w=1 3\n");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error":"partial write: field type conflict: input field \"v\" on measurement \"conf\" is type integer, already exists as type float dropped=1"})
    );
    assert_eq!(node.dump("db", "&measurement=conf").len(), 2);
    // `time` is not a valid tag or field key.
    let r = node.write("db=db", b"tk time=1 1\ntk v=1 1\n");
    assert_eq!(
        r.json(),
        json!({"error":"partial write: invalid field name: input field \"time\" on measurement \"tk\" is invalid dropped=1"})
    );
    let r = node.write("db=db", b"tk,time=1 v=1 1\n");
    assert_eq!(
        r.json(),
        json!({"error":"partial write: invalid tag key: input tag \"time\" on measurement \"tk\" is invalid dropped=1"})
    );
    assert_eq!(node.dump("db", "&measurement=tk").len(), 1);
}

#[test]
fn points_beyond_retention_are_dropped_and_reported() {
    let dir = temp_dir();
    let node = Node::start(dir.path());
    let r = node.query("CREATE DATABASE db WITH DURATION 1h");
    assert_eq!(r.status, 200);
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = format!("old v=1 {}\nnew v=1 {}\n", now_s - 7200, now_s - 10);
    let r = node.write("db=db&precision=s", body.as_bytes());
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error":"partial write: points beyond retention policy dropped=1"})
    );
    let points = node.dump("db", "");
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].0, "new");
}

#[test]
fn body_size_limit_is_413() {
    let dir = temp_dir();
    let config = dir.path().join("small.toml");
    std::fs::write(
        &config,
        "[http]\nmax-body-size-bytes = 1000\nmax-decompressed-body-bytes = 1200\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let node = Node::start_with(
        &data,
        &["--cores", "1", "--config", config.to_str().unwrap()],
    );
    node.create_database("db");
    let big = "m v=1 1\n".repeat(200);
    let r = node.write("db=db", big.as_bytes());
    assert_eq!(r.status, 413);
    assert_eq!(r.json(), json!({"error":"http: request body too large"}));
    // The limit counts bytes received, as InfluxDB's: a gzip body of 1,100 bytes
    // decoded is taken...
    let medium = "m v=1 1\n".repeat(137);
    let r = node.request(
        "POST",
        "/write?db=db",
        &[("Content-Encoding", "gzip")],
        &gzip(medium.as_bytes()),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    // ...and one decoding past max-decompressed-body-bytes gets its own 413.
    let r = node.request(
        "POST",
        "/write?db=db",
        &[("Content-Encoding", "gzip")],
        &gzip(big.as_bytes()),
    );
    assert_eq!(r.status, 413);
    assert_eq!(
        r.json(),
        json!({"error":"gzip body decompresses to more than max-decompressed-body-bytes (1200 bytes)"})
    );
    let r = node.write("db=db", b"m v=1 1\n");
    assert_eq!(r.status, 204);
}

#[test]
fn escaped_names_and_all_field_types_are_stored() {
    let dir = temp_dir();
    let node = Node::start(dir.path());
    node.create_database("db");
    let body =
        "wei\\ rd\\,m,b\\ key=v\\,1,a\\=k=x f\\ 1=1.5,i=-3i,u=7u,t=T,s=\"q\\\"uote\\\\\" 99\n";
    let r = node.write("db=db", body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    let points = node.dump("db", "");
    let key = "wei\\ rd\\,m,a\\=k=x,b\\ key=v\\,1";
    let fields: Vec<(&str, serde_json::Value)> = points
        .iter()
        .map(|p| {
            assert_eq!(p.0, key);
            assert_eq!(p.2, 99);
            (p.1.as_str(), p.3.clone())
        })
        .collect();
    assert_eq!(
        fields,
        vec![
            ("f 1", json!(1.5)),
            ("i", json!(-3)),
            ("s", json!("q\"uote\\")),
            ("t", json!(true)),
            ("u", json!(7)),
        ]
    );
}

/// `connectionsSteered` of `SHOW STATS FOR 'httpd'`.
fn connections_steered(node: &Node) -> u64 {
    let stats = node.query("SHOW STATS FOR 'httpd'").json();
    let series = &stats["results"][0]["series"][0];
    let at = series["columns"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c == "connectionsSteered")
        .expect("connectionsSteered");
    series["values"][0][at].as_u64().unwrap()
}

/// Sends `requests` on one keep-alive connection and returns each answer's body.
fn keep_alive(addr: std::net::SocketAddr, requests: &[&str]) -> Vec<String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let stream = std::net::TcpStream::connect(addr).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut bodies = Vec::new();
    for target in requests {
        write!(writer, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        bodies.push(String::from_utf8(body).unwrap());
    }
    bodies
}

#[test]
fn query_connections_move_to_the_core_that_holds_their_database() {
    let dir = temp_dir();
    let node = Node::start(dir.path()); // 2 cores
    node.create_database("steer");
    let body: String = (1..=20).map(|i| format!("m,h=a v={i} {i}\n")).collect();
    assert_eq!(node.write("db=steer", body.as_bytes()).status, 204);
    let count = "/query?db=steer&q=SELECT%20count(v)%20FROM%20m";
    let sum = "/query?db=steer&q=SELECT%20sum(v)%20FROM%20m";
    // Connections are handed to the cores in turn: of four, some land on the core
    // without the database and move; every answer is whole, also for the requests
    // after the first on a moved connection.
    for _ in 0..4 {
        let answers = keep_alive(node.addr, &[count, sum, count]);
        assert!(
            answers[0].contains(r#""values":[["1970-01-01T00:00:00Z",20]]"#),
            "{answers:?}"
        );
        assert!(
            answers[1].contains(r#""values":[["1970-01-01T00:00:00Z",210]]"#),
            "{answers:?}"
        );
        assert_eq!(answers[0], answers[2]);
    }
    let steered = connections_steered(&node);
    assert!(steered >= 1, "some connections moved");
    // Writes are not steered: a write connection stays where it was handed.
    let before = steered;
    for _ in 0..4 {
        assert_eq!(node.write("db=steer", b"m,h=b v=1 1\n").status, 204);
    }
    let steered_after = connections_steered(&node);
    assert_eq!(
        steered_after, before,
        "writes and database-less queries stay"
    );
}
