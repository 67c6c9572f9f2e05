//! InfluxDB 1.x parity, round 2 (issue 17): the answers' shapes (gzip, MessagePack,
//! `X-Influxdb-Error`), no silent row limit, and 1.8's `/api/v2/write` — against
//! influxd 1.6.7 where it has the feature (compared live when influxd is installed),
//! and with the clients that use them: the Python `influxdb` package with its default
//! settings (MessagePack) and the 2.x `influxdb-client` package.

mod common;

use common::{http_keep_alive, temp_dir, urlencode, Node};
use std::io::Read;
use std::net::SocketAddr;

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

/// (status, Content-Type, Content-Encoding, X-Influxdb-Error, body decoded)
type Shape = (u16, Option<String>, Option<String>, Option<String>, Vec<u8>);

fn shape(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Shape {
    let r = http_keep_alive(addr, "GET", path, headers, b"").unwrap();
    let encoding = r.header("Content-Encoding").map(str::to_string);
    let body = if encoding.as_deref() == Some("gzip") {
        gunzip(&r.body)
    } else {
        r.body.clone()
    };
    (
        r.status,
        r.header("Content-Type").map(str::to_string),
        encoding,
        r.header("X-Influxdb-Error").map(str::to_string),
        body,
    )
}

const DATA: &str = "cpu v=1.5,i=2i,s=\"x\",b=true 1000000000\ncpu v=2 2000000000\n";

fn load(addr: SocketAddr) {
    let r = common::http(addr, "POST", "/query?q=CREATE+DATABASE+db", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    let r = common::http(addr, "POST", "/write?db=db", &[], DATA.as_bytes()).unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
}

/// The requests whose answers' shapes are compared.
fn requests() -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    let q = |text: &str| format!("/query?db=db&q={}", urlencode(text));
    let msgpack = ("Accept", "application/x-msgpack");
    let gzip = ("Accept-Encoding", "gzip");
    vec![
        (q("SELECT * FROM cpu"), vec![msgpack]),
        (
            q("SELECT * FROM cpu; SHOW DATABASES; SELECT * FROM nope; SHOW USERS"),
            vec![msgpack],
        ),
        (q("SELECT * FROM cpu"), vec![msgpack, gzip]),
        (q("SELECT v FROM cpu") + "&epoch=ms", vec![msgpack]),
        (q("SELECT mean(v) FROM cpu"), vec![msgpack]),
        (
            q("SELECT * FROM cpu") + "&chunked=true&chunk_size=1",
            vec![msgpack],
        ),
        (q("SELEC"), vec![msgpack]),
        (q("SELEC"), vec![gzip]),
        ("/query?db=db".to_string(), vec![msgpack]),
        (q("SELECT * FROM cpu"), vec![gzip]),
        (q("SELECT * FROM cpu") + "&pretty=true", vec![gzip]),
        ("/ping".to_string(), vec![gzip]),
        (
            q("SELECT * FROM cpu"),
            vec![("Accept", "application/csv"), gzip],
        ),
    ]
}

#[test]
fn answer_shapes_match_influxdb() {
    let dir = temp_dir();
    let node = Node::start(dir.path());
    load(node.addr);
    let ours: Vec<Shape> = requests()
        .iter()
        .map(|(path, headers)| shape(node.addr, path, headers))
        .collect();
    // What holds whether or not influxd is here.
    let (status, ctype, encoding, _, body) = &ours[2];
    assert_eq!(
        (*status, ctype.as_deref(), encoding.as_deref()),
        (200, Some("application/x-msgpack"), Some("gzip"))
    );
    assert_eq!(body, &ours[0].4, "gzip of the same answer");
    assert_eq!(ours[11].2, None, "a 204 is not gzipped");
    assert_eq!(ours[7].2, None, "an error is not gzipped");
    match common::start_influxd("") {
        Ok(influxd) => {
            load(influxd.addr);
            for ((path, headers), ours) in requests().iter().zip(&ours) {
                let theirs = shape(influxd.addr, path, headers);
                assert_eq!(
                    theirs,
                    *ours,
                    "{path} {headers:?}\ninfluxd:   {}\nshardcore: {}",
                    String::from_utf8_lossy(&theirs.4),
                    String::from_utf8_lossy(&ours.4)
                );
            }
        }
        Err(why) => eprintln!("only our own answers checked: {why}"),
    }
}

/// InfluxDB's default `max-row-limit` is 0: a client gets every row, not 10,000 of
/// them with no error.
#[test]
fn no_silent_row_limit_by_default() {
    let dir = temp_dir();
    let node = Node::start(dir.path());
    node.create_database("db");
    let mut lines = String::new();
    for i in 0..15_000 {
        lines.push_str(&format!("m v={i} {}\n", 1_000_000_000 + i));
    }
    assert_eq!(node.write("db=db", lines.as_bytes()).status, 204);
    let answer = node.answer("db", "SELECT v FROM m");
    let series = &answer["results"][0]["series"][0];
    assert_eq!(series["values"].as_array().unwrap().len(), 15_000);
    assert!(series.get("partial").is_none());
}

/// InfluxDB 1.8's `/api/v2/write`: `bucket=db/rp`, `org` ignored, 2.x precisions,
/// `Authorization: Token user:password` once users exist.
#[test]
fn api_v2_write_as_influxdb_1_8() {
    let dir = temp_dir();
    let node = Node::start_with_config(dir.path(), "[http]\nauth-enabled = true\n");
    let admin = [("Authorization", "Token admin:pw")];
    let post = |path: &str, headers: &[(&str, &str)], body: &str| {
        node.request("POST", path, headers, body.as_bytes())
    };
    let q = |text: &str| format!("/query?q={}", urlencode(text));
    assert_eq!(
        post(
            &q("CREATE USER admin WITH PASSWORD 'pw' WITH ALL PRIVILEGES"),
            &[],
            ""
        )
        .status,
        200
    );
    for text in [
        "CREATE DATABASE db",
        "CREATE RETENTION POLICY forever ON db DURATION INF REPLICATION 1",
        "CREATE USER bob WITH PASSWORD 'bpw'",
        "GRANT READ ON db TO bob",
    ] {
        assert_eq!(post(&q(text), &admin, "").status, 200, "{text}");
    }
    let r = post(
        "/api/v2/write?org=any&bucket=db/forever&precision=s",
        &admin,
        "cpu v=1 1600000000",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = post(
        "/api/v2/write?bucket=db&precision=us",
        &admin,
        "cpu v=2 1600000000000001",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = post(
        &format!(
            "/query?db=db&epoch=ns&q={}",
            urlencode("SELECT v FROM db.forever.cpu")
        ),
        &admin,
        "",
    );
    assert!(r.text().contains("[1600000000000000000,1]"), "{}", r.text());
    let r = post(
        &format!("/query?db=db&epoch=ns&q={}", urlencode("SELECT v FROM cpu")),
        &admin,
        "",
    );
    assert!(r.text().contains("[1600000000000001000,2]"), "{}", r.text());
    // Errors as 1.8's.
    let r = post("/api/v2/write?bucket=db/", &admin, "cpu v=1");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            404,
            "{\"error\":\"bucket name \\\"db/\\\" is missing retention policy\"}\n"
        )
    );
    let r = post("/api/v2/write?bucket=db&precision=n", &admin, "cpu v=1");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            400,
            "{\"error\":\"invalid precision \\\"n\\\" (use ns, us, ms or s)\"}\n"
        )
    );
    let r = post(
        "/api/v2/write?bucket=db",
        &[("Authorization", "Token bob:bpw")],
        "cpu v=1",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = post("/api/v2/write?bucket=db", &[], "cpu v=1");
    assert_eq!(r.status, 401, "{}", r.text());

    // The 2.x Python client, as users of InfluxDB 1.8 run it.
    if !common::python_has("influxdb_client", "pip install influxdb-client") {
        return;
    }
    let script = r#"
import sys
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
with InfluxDBClient(url=sys.argv[1], token="admin:pw", org="-") as client:
    client.write_api(write_options=SYNCHRONOUS).write(bucket="db/forever", record="py v=42 1600000000000000000")
print("ok")
"#;
    common::run_python(script, &[&format!("http://{}", node.addr)]);
    let r = post(
        &format!(
            "/query?db=db&epoch=ns&q={}",
            urlencode("SELECT v FROM db.forever.py")
        ),
        &admin,
        "",
    );
    assert!(
        r.text().contains("[1600000000000000000,42]"),
        "{}",
        r.text()
    );
}

/// The Python `influxdb` package with its default settings asks for MessagePack: its
/// answers (times decoded by the client) are what it gets from InfluxDB.
#[test]
fn python_influxdb_client_defaults() {
    if !common::python_has("influxdb, msgpack", "pip install influxdb") {
        return;
    }
    let dir = temp_dir();
    let node = Node::start(dir.path());
    let script = r#"
import sys
from influxdb import InfluxDBClient
c = InfluxDBClient("127.0.0.1", int(sys.argv[1]), database="pydb", gzip=True)
c.create_database("pydb")
c.write_points([{"measurement": "cpu", "tags": {"host": "a"}, "time": "2020-01-01T00:00:00.5Z", "fields": {"value": 1.5, "n": 3}}])
r = c.query("SELECT * FROM cpu")
assert r.raw["series"][0]["columns"] == ["time", "host", "n", "value"], r.raw
points = list(r.get_points())
assert points == [{"time": "2020-01-01T00:00:00.500000Z", "host": "a", "n": 3, "value": 1.5}], points
points = list(c.query("SELECT * FROM cpu", epoch="ms").get_points())
assert points[0]["time"] == 1577836800500, points
print("ok")
"#;
    common::run_python(script, &[&node.addr.port().to_string()]);
}

/// InfluxDB 1.8's `/api/v2/delete`: a time range and a predicate of equalities,
/// `_measurement` naming the measurement; refused for other operators; and through
/// the influxdb-client package's delete API.
#[test]
fn api_v2_delete_as_influxdb_1_8() {
    let dir = temp_dir();
    let node = Node::start(dir.path());
    node.create_database("db");
    let lines = "cpu,host=a v=1 1000000000\ncpu,host=b v=2 1000000000\ncpu,host=a v=3 5000000000\nmem,host=a v=4 1000000000\n";
    assert_eq!(node.write("db=db", lines.as_bytes()).status, 204);
    let delete = |body: &str| {
        node.request(
            "POST",
            "/api/v2/delete?org=x&bucket=db",
            &[],
            body.as_bytes(),
        )
    };
    let r = delete(
        r#"{"start":"1970-01-01T00:00:00Z","stop":"1970-01-01T00:00:02Z","predicate":"_measurement=\"cpu\" AND host='a'"}"#,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let answer = node.answer("db", "SELECT v FROM cpu, mem GROUP BY host");
    let text = answer.to_string();
    // cpu,host=a at 1 s went; cpu,host=a at 5 s (after stop), cpu,host=b, mem stay.
    assert!(!text.contains("[\"1970-01-01T00:00:01Z\",1]"), "{text}");
    for kept in [
        "[\"1970-01-01T00:00:05Z\",3]",
        "[\"1970-01-01T00:00:01Z\",2]",
        "[\"1970-01-01T00:00:01Z\",4]",
    ] {
        assert!(text.contains(kept), "{kept}: {text}");
    }
    let r = delete(
        r#"{"start":"1970-01-01T00:00:00Z","stop":"1970-01-01T00:00:02Z","predicate":"host!='a'"}"#,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains("predicate only supports equality operators and conjunctions"),
        "{}",
        r.text()
    );
    let r = delete(r#"{"stop":"1970-01-01T00:00:02Z"}"#);
    assert_eq!(
        r.text(),
        "{\"error\":\"delete - start field in RFC3339Nano format required\"}\n"
    );
    let r = node.request("POST", "/api/v2/delete?bucket=nodb", &[], b"{}");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            404,
            "{\"error\":\"delete - database not found: \\\"nodb\\\"\"}\n"
        )
    );
    if !common::python_has("influxdb_client", "pip install influxdb-client") {
        return;
    }
    let script = r#"
import sys
from influxdb_client import InfluxDBClient
with InfluxDBClient(url=sys.argv[1], token="", org="-") as client:
    client.delete_api().delete("1970-01-01T00:00:00Z", "1970-01-01T00:00:10Z", '_measurement="mem"', bucket="db", org="-")
print("ok")
"#;
    common::run_python(script, &[&format!("http://{}", node.addr)]);
    let answer = node.answer("db", "SELECT count(v) FROM mem");
    assert!(answer["results"][0].get("series").is_none(), "{answer}");
}
