//! `shardcore-bench ceilings`: the physical limits of this machine that bound ingest —
//! memcpy bandwidth, loopback TCP bandwidth, sequential write bandwidth with one
//! fdatasync at the end, and the fdatasync rate of small appends (what a WAL's group
//! commit can reach) — so PERFORMANCE.md can say how close ShardCore gets to them.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// One measured ceiling.
pub struct Ceiling {
    pub what: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub how: String,
}

/// memcpy of a 64 MiB buffer, repeated for about a second.
fn memcpy() -> Ceiling {
    let src = vec![7u8; 64 << 20];
    let mut dst = vec![0u8; 64 << 20];
    let start = Instant::now();
    let mut copied = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        copied += src.len() as u64;
    }
    Ceiling {
        what: "memcpy",
        value: copied as f64 / start.elapsed().as_secs_f64() / 1e9,
        unit: "GB/s",
        how: "64 MiB copy_from_slice, repeated for 1 s, one thread".into(),
    }
}

/// One TCP connection over 127.0.0.1, 1 MiB writes, a reader thread discarding.
fn loopback() -> io::Result<Ceiling> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(n),
                k => n += k as u64,
            }
        }
    });
    let mut s = std::net::TcpStream::connect(addr)?;
    let buf = vec![1u8; 1 << 20];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        s.write_all(&buf)?;
    }
    drop(s);
    let n = reader
        .join()
        .map_err(|_| io::Error::other("reader panicked"))??;
    Ok(Ceiling {
        what: "loopback TCP",
        value: n as f64 / start.elapsed().as_secs_f64() / 1e9,
        unit: "GB/s",
        how: "one connection on 127.0.0.1, 1 MiB writes for 2 s, a thread reading and discarding"
            .into(),
    })
}

/// 512 MiB written sequentially in 1 MiB blocks, then one fdatasync.
fn sequential_write(dir: &Path) -> io::Result<Ceiling> {
    let path = dir.join("ceilings-seq.tmp");
    let f = std::fs::File::create(&path)?;
    let buf = vec![3u8; 1 << 20];
    let start = Instant::now();
    for i in 0..512u64 {
        f.write_all_at(&buf, i << 20)?;
    }
    f.sync_data()?;
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(Ceiling {
        what: "sequential write + fdatasync",
        value: 512.0 * 1.048_576 / secs,
        unit: "MB/s",
        how: format!(
            "512 MiB in 1 MiB pwrites to a new file in {}, one fdatasync at the end",
            dir.display()
        ),
    })
}

/// 4 KiB appends, each followed by fdatasync, for 2 s.
fn fdatasync_rate(dir: &Path) -> io::Result<Ceiling> {
    let path = dir.join("ceilings-sync.tmp");
    let f = std::fs::File::create(&path)?;
    // Preallocated, as a WAL segment is: the syncs then do not also extend the file.
    f.set_len(64 << 20)?;
    f.sync_all()?;
    let buf = vec![5u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        f.write_all_at(&buf, (n % 16384) * 4096)?;
        f.sync_data()?;
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(Ceiling {
        what: "fdatasync rate",
        value: n as f64 / secs,
        unit: "syncs/s",
        how: format!(
            "4 KiB pwrite + fdatasync, repeated for 2 s, preallocated file in {}",
            dir.display()
        ),
    })
}

/// Every ceiling, measured one after the other.
pub fn measure(dir: &Path) -> io::Result<Vec<Ceiling>> {
    Ok(vec![
        memcpy(),
        loopback()?,
        sequential_write(dir)?,
        fdatasync_rate(dir)?,
    ])
}

/// A markdown table of the ceilings.
pub fn markdown(ceilings: &[Ceiling]) -> String {
    let mut out = String::from("| ceiling | value | how |\n|---|---:|---|\n");
    for c in ceilings {
        let _ = writeln!(
            out,
            "| {} | {:.2} {} | {} |",
            c.what, c.value, c.unit, c.how
        );
    }
    out
}
