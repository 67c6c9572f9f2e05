//! `sink`: the cheapest HTTP server that still reads every request fully, so a load run
//! against it measures the client's own ceiling. One thread per connection; `/query`
//! gets an empty InfluxDB result (so `--create-db` works), everything else 204.

use crate::http1::{read_body, read_head, write_message, WireError};
use std::io::{self, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const NO_CONTENT: &[u8] =
    b"HTTP/1.1 204 No Content\r\nX-Influxdb-Version: shardcore-bench-sink\r\n\r\n";
const QUERY_OK_BODY: &[u8] = b"{\"results\":[{\"statement_id\":0}]}\n";

/// Totals over all connections.
#[derive(Default)]
struct SinkStats {
    requests: AtomicU64,
    body_bytes: AtomicU64,
}

/// Serves until the process is killed.
pub fn run(listen: &str) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    eprintln!("sink listening on {}", listener.local_addr()?);
    let stats = Arc::new(SinkStats::default());
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let stats = stats.clone();
                std::thread::spawn(move || serve(stream, &stats));
            }
            Err(e) => eprintln!("sink: accept failed: {e}"),
        }
    }
    Ok(())
}

/// Serves one connection, then logs its totals.
fn serve(stream: TcpStream, stats: &SinkStats) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let (mut requests, mut bytes) = (0u64, 0u64);
    let result = serve_requests(stream, &mut requests, &mut bytes);
    let all = stats.requests.fetch_add(requests, Ordering::Relaxed) + requests;
    let all_bytes = stats.body_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
    let end = match result {
        Ok(()) => "closed".to_string(),
        Err(e) => format!("ended: {e}"),
    };
    eprintln!(
        "sink: {peer} {end} after {requests} requests, {:.1} MB (all connections: {all} requests, {:.1} MB)",
        bytes as f64 / 1e6,
        all_bytes as f64 / 1e6
    );
}

fn serve_requests(stream: TcpStream, requests: &mut u64, bytes: &mut u64) -> Result<(), WireError> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(256 * 1024, stream.try_clone()?);
    let mut writer = stream;
    let mut scratch = Vec::new();
    while let Some(head) = read_head(&mut reader)? {
        scratch.clear();
        *bytes += read_body(&mut reader, head.request_framing(), &mut scratch, 0)?;
        *requests += 1;
        let path = head.start_line.split(' ').nth(1).unwrap_or("");
        if path.starts_with("/query") {
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                QUERY_OK_BODY.len()
            );
            write_message(&mut writer, reply.as_bytes(), QUERY_OK_BODY)?;
        } else {
            write_message(&mut writer, NO_CONTENT, &[])?;
        }
        if head.close {
            break;
        }
    }
    Ok(())
}
