//! Sockets: the listening socket, and handing a connection's socket from one core to another.
//! The `unsafe` of the server crate lives here, each with its proof.
//!
//! Listening: SO_REUSEADDR (restart while old connections sit in TIME_WAIT, as Redis does) and
//! SO_REUSEPORT (every core binds the same port; the kernel spreads connections). glommio's own
//! `bind` sets only the latter, so the socket is built here and handed to glommio.
//!
//! Handing over: glommio streams cannot give up their fd, so `detach` duplicates it and drops
//! the stream (which only closes its own fd), and `attach` wraps the duplicate on the new core.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};

/// Pending connections the kernel queues per listener (Redis's tcp-backlog is 511).
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds `addr` with SO_REUSEADDR and SO_REUSEPORT and returns it as a glommio listener.
pub fn bind(addr: &str) -> std::io::Result<glommio::net::TcpListener> {
    let addr: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    let fd = socket.into_raw_fd();
    #[expect(unsafe_code, reason = "glommio takes a listening socket only as a raw fd")]
    // SAFETY: `fd` comes from `Socket::into_raw_fd` just above: an open, bound, listening TCP
    // socket that nothing else owns or will close, so the listener becomes its sole owner.
    // This runs on a glommio executor thread, which `from_raw_fd` needs for its reactor.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
    Ok(listener)
}

/// Takes the socket out of a stream that has no read or write in flight, as an owned fd that
/// can cross to another thread.
pub fn detach(stream: glommio::net::TcpStream) -> std::io::Result<OwnedFd> {
    #[expect(unsafe_code, reason = "glommio streams expose only a raw fd")]
    // SAFETY: `stream` is alive for the whole borrow (it is dropped only after the duplicate is
    // made), so the fd is open and valid while `borrow_raw`'s BorrowedFd exists.
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let owned = borrowed.try_clone_to_owned()?;
    drop(stream); // closes the original fd only; the duplicate keeps the connection open
    Ok(owned)
}

/// Wraps a detached socket in a stream on this core's executor.
pub fn attach(fd: OwnedFd) -> glommio::net::TcpStream {
    #[expect(unsafe_code, reason = "glommio builds a stream only from a raw fd")]
    // SAFETY: `into_raw_fd` gives up ownership of an open connected TCP socket (made by
    // `detach`), so the new stream is its sole owner; this runs on a glommio executor thread.
    unsafe {
        glommio::net::TcpStream::from_raw_fd(fd.into_raw_fd())
    }
}
