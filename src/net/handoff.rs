//! A client connection moving between the cores of one node: accepted on core 0 and
//! handed to another core, or moved (as a duplicated descriptor) to the core that
//! holds its data. Either way a connection that never arrives is closed, not leaked.

/// An accepted connection on its way to the core that will serve it. If it is dropped
/// before it arrives (a core shutting down), the socket is closed, not leaked.
pub struct HandoffStream(Option<glommio::net::AcceptedTcpStream>);

impl HandoffStream {
    pub fn new(accepted: glommio::net::AcceptedTcpStream) -> HandoffStream {
        HandoffStream(Some(accepted))
    }
}

impl HandoffStream {
    /// Binds the connection to the current core's reactor.
    pub fn into_stream(mut self) -> glommio::net::TcpStream {
        self.0.take().expect("bound once").bind_to_executor()
    }
}

impl Drop for HandoffStream {
    fn drop(&mut self) {
        if let Some(accepted) = self.0.take() {
            drop(accepted.bind_to_executor());
        }
    }
}

/// A client connection moving to another core of this node (see `http::steer`): a
/// duplicate of its descriptor, closed if it never arrives.
pub struct MovedStream(std::os::fd::OwnedFd);

impl MovedStream {
    pub fn new(fd: std::os::fd::OwnedFd) -> MovedStream {
        MovedStream(fd)
    }
}

impl MovedStream {
    /// Binds the connection to the current core's reactor.
    pub fn into_stream(self) -> glommio::net::TcpStream {
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: the descriptor is a connected TCP socket this value owns alone.
        unsafe { glommio::net::TcpStream::from_raw_fd(self.0.into_raw_fd()) }
    }
}
