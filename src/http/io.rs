//! Drives hyper's connection traits on a glommio socket (as glommio's hyper example
//! does), so hyper runs on our executors without a tokio runtime.

use futures_lite::{AsyncRead, AsyncWrite};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A glommio `TcpStream` (or a TLS stream over one) as a hyper I/O object; bytes read
/// mark the connection's phase (`conn`), for its header-read and idle timeouts.
pub struct HyperStream<S> {
    pub stream: S,
    pub connection: std::rc::Rc<super::conn::Connection>,
}

impl<S: AsyncRead + Unpin> hyper::rt::Read for HyperStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut cursor: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: we initialise the bytes we expose before reading into them, and only
        // advance the cursor by what the read filled.
        let uninit = unsafe { cursor.as_mut() };
        for b in uninit.iter_mut() {
            b.write(0);
        }
        let buf = unsafe { &mut *(uninit as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.connection.bytes_arrived();
                }
                // SAFETY: `n` bytes were written by the read.
                unsafe { cursor.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for HyperStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}
