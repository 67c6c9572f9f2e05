//! The few pieces of HTTP/1.1 the load client and the sink need: reading a message
//! head, reading (and mostly discarding) a body framed by Content-Length, chunked
//! encoding or connection close. Bounded everywhere: a hostile or broken peer gets an
//! error, never a panic or an unbounded allocation.

use std::fmt;
use std::io::{self, BufRead, IoSlice, Read, Write};

/// Longest head line accepted (status/request line or one header).
const MAX_LINE_BYTES: u64 = 64 * 1024;
/// Most headers accepted in one message.
const MAX_HEADERS: usize = 128;

/// Failures of the wire protocol.
#[derive(Debug)]
pub enum WireError {
    /// The socket failed.
    Io(io::Error),
    /// The peer closed the connection in the middle of a message.
    UnexpectedEof(&'static str),
    /// The peer sent something that is not HTTP/1.x.
    Malformed(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "I/O error: {e}"),
            WireError::UnexpectedEof(what) => write!(f, "connection closed while reading {what}"),
            WireError::Malformed(what) => write!(f, "malformed HTTP message: {what}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> WireError {
        WireError::Io(e)
    }
}

/// How a body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The parts of a message head the tools look at.
#[derive(Debug, Default)]
pub struct Head {
    /// The status line or request line, without CRLF.
    pub start_line: String,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// `Connection: close` was sent.
    pub close: bool,
    /// `Connection: keep-alive` was sent (matters for HTTP/1.0).
    pub keep_alive: bool,
    /// `Retry-After` in seconds, when it is a number.
    pub retry_after_s: Option<u64>,
}

/// Reads one line (up to LF) into `buf` without the line ending. `Ok(false)` on EOF
/// before any byte.
fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> Result<bool, WireError> {
    buf.clear();
    let n = r.by_ref().take(MAX_LINE_BYTES).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() != Some(&b'\n') {
        if n as u64 >= MAX_LINE_BYTES {
            return Err(WireError::Malformed("header line too long".into()));
        }
        return Err(WireError::UnexpectedEof("a header line"));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(true)
}

/// Reads a message head. `Ok(None)` when the peer closed before sending anything.
pub fn read_head<R: BufRead>(r: &mut R) -> Result<Option<Head>, WireError> {
    let mut line = Vec::with_capacity(128);
    if !read_line(r, &mut line)? {
        return Ok(None);
    }
    let mut head = Head {
        start_line: String::from_utf8_lossy(&line).into_owned(),
        ..Head::default()
    };
    for _ in 0..MAX_HEADERS {
        if !read_line(r, &mut line)? {
            return Err(WireError::UnexpectedEof("the message head"));
        }
        if line.is_empty() {
            return Ok(Some(head));
        }
        apply_header(&mut head, &line)?;
    }
    Err(WireError::Malformed(format!(
        "more than {MAX_HEADERS} headers"
    )))
}

fn apply_header(head: &mut Head, line: &[u8]) -> Result<(), WireError> {
    let text = String::from_utf8_lossy(line);
    let Some((name, value)) = text.split_once(':') else {
        return Err(WireError::Malformed(format!(
            "header without colon: {text:?}"
        )));
    };
    let (name, value) = (name.trim(), value.trim());
    if name.eq_ignore_ascii_case("content-length") {
        let n = value
            .parse::<u64>()
            .map_err(|_| WireError::Malformed(format!("bad Content-Length {value:?}")))?;
        head.content_length = Some(n);
    } else if name.eq_ignore_ascii_case("transfer-encoding") {
        head.chunked = value.to_ascii_lowercase().contains("chunked");
    } else if name.eq_ignore_ascii_case("connection") {
        let v = value.to_ascii_lowercase();
        head.close |= v.contains("close");
        head.keep_alive |= v.contains("keep-alive");
    } else if name.eq_ignore_ascii_case("retry-after") {
        head.retry_after_s = value.parse::<u64>().ok();
    }
    Ok(())
}

impl Head {
    /// Framing of a request body (no body unless announced).
    pub fn request_framing(&self) -> Framing {
        if self.chunked {
            Framing::Chunked
        } else {
            self.content_length.map_or(Framing::Empty, Framing::Length)
        }
    }

    /// Framing of a response body with status `status` (to a non-HEAD request).
    pub fn response_framing(&self, status: u16) -> Framing {
        if (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::Empty
        } else if self.chunked {
            Framing::Chunked
        } else {
            self.content_length
                .map_or(Framing::UntilClose, Framing::Length)
        }
    }
}

/// Reads the body with `framing`, keeping its first `keep_limit` bytes in `keep` and
/// discarding the rest. Returns the body length.
pub fn read_body<R: BufRead>(
    r: &mut R,
    framing: Framing,
    keep: &mut Vec<u8>,
    keep_limit: usize,
) -> Result<u64, WireError> {
    match framing {
        Framing::Empty => Ok(0),
        Framing::Length(n) => consume(r, n, keep, keep_limit).map(|()| n),
        Framing::UntilClose => consume_to_eof(r, keep, keep_limit),
        Framing::Chunked => read_chunked(r, keep, keep_limit),
    }
}

/// Consumes exactly `n` bytes.
fn consume<R: BufRead>(
    r: &mut R,
    mut n: u64,
    keep: &mut Vec<u8>,
    keep_limit: usize,
) -> Result<(), WireError> {
    while n > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(WireError::UnexpectedEof("the body"));
        }
        let take = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        let room = keep_limit.saturating_sub(keep.len()).min(take);
        keep.extend_from_slice(&buf[..room]);
        r.consume(take);
        n -= take as u64;
    }
    Ok(())
}

fn consume_to_eof<R: BufRead>(
    r: &mut R,
    keep: &mut Vec<u8>,
    keep_limit: usize,
) -> Result<u64, WireError> {
    let mut total = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(total);
        }
        let take = buf.len();
        let room = keep_limit.saturating_sub(keep.len()).min(take);
        keep.extend_from_slice(&buf[..room]);
        r.consume(take);
        total += take as u64;
    }
}

fn read_chunked<R: BufRead>(
    r: &mut R,
    keep: &mut Vec<u8>,
    keep_limit: usize,
) -> Result<u64, WireError> {
    let mut line = Vec::new();
    let mut total = 0u64;
    loop {
        if !read_line(r, &mut line)? {
            return Err(WireError::UnexpectedEof("a chunk size"));
        }
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| WireError::Malformed(format!("bad chunk size {size_text:?}")))?;
        if size == 0 {
            return skip_trailers(r, &mut line).map(|()| total);
        }
        consume(r, size, keep, keep_limit)?;
        total = total.saturating_add(size);
        if !read_line(r, &mut line)? || !line.is_empty() {
            return Err(WireError::Malformed("chunk not followed by CRLF".into()));
        }
    }
}

fn skip_trailers<R: BufRead>(r: &mut R, line: &mut Vec<u8>) -> Result<(), WireError> {
    for _ in 0..MAX_HEADERS {
        if !read_line(r, line)? {
            return Err(WireError::UnexpectedEof("the chunked trailer"));
        }
        if line.is_empty() {
            return Ok(());
        }
    }
    Err(WireError::Malformed("too many trailer lines".into()))
}

/// Writes `head` then `body` with as few syscalls as the kernel allows.
pub fn write_message<W: Write>(w: &mut W, head: &[u8], body: &[u8]) -> io::Result<()> {
    let total = head.len() + body.len();
    let mut done = 0usize;
    while done < total {
        let result = if done < head.len() {
            w.write_vectored(&[IoSlice::new(&head[done..]), IoSlice::new(body)])
        } else {
            w.write(&body[done - head.len()..])
        };
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunked_and_length_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n\
                    5\r\nhello\r\n1;x=y\r\n!\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let mut r = io::BufReader::new(&raw[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        assert_eq!(head.retry_after_s, Some(3));
        let mut keep = Vec::new();
        let n = read_body(&mut r, head.response_framing(200), &mut keep, 4).unwrap();
        assert_eq!((n, keep.as_slice()), (6, &b"hell"[..]));
        let head = read_head(&mut r).unwrap().unwrap();
        assert_eq!(head.response_framing(204), Framing::Empty);
        assert!(read_head(&mut r).unwrap().is_none());
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nbogus\r\n\r\n"[..],
            b"HTTP/1.1 200",
            b"x\r\nContent-Length: -1\r\n\r\n",
        ] {
            let mut r = io::BufReader::new(raw);
            assert!(read_head(&mut r).is_err());
        }
    }
}
