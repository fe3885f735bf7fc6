//! Sockets: the listening socket, and handing a connection's socket from one core to another.
//! The `unsafe` of the server crate lives here, each with its proof.
//!
//! Listening: SO_REUSEADDR (restart while old connections sit in TIME_WAIT, as Redis does) and
//! SO_REUSEPORT (every core binds the same port; the kernel spreads connections). glommio's own
//! `bind` sets only the latter, so the socket is built here and handed to glommio.
//!
//! Handing over: glommio streams cannot give up their fd, so `duplicate` copies it (the caller
//! then drops the stream, which only closes its own fd), and `attach` wraps the copy on the
//! new core.

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

/// A duplicate of a stream's socket, as an owned fd that can cross to another thread. The
/// caller drops the stream afterwards (which closes only its own fd) if the move goes ahead;
/// if this fails (EMFILE), the stream is untouched and can keep serving.
pub fn duplicate(stream: &glommio::net::TcpStream) -> std::io::Result<OwnedFd> {
    #[expect(unsafe_code, reason = "glommio streams expose only a raw fd")]
    // SAFETY: `stream` is borrowed for the whole lifetime of the BorrowedFd, so the fd is open
    // and valid while it exists.
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    borrowed.try_clone_to_owned()
}

/// Wraps a detached socket in a stream on this core's executor.
pub fn attach(fd: OwnedFd) -> glommio::net::TcpStream {
    #[expect(unsafe_code, reason = "glommio builds a stream only from a raw fd")]
    // SAFETY: `into_raw_fd` gives up ownership of an open connected TCP socket (made by
    // `duplicate`), so the new stream is its sole owner; this runs on a glommio executor thread.
    unsafe {
        glommio::net::TcpStream::from_raw_fd(fd.into_raw_fd())
    }
}

/// Shuts down both directions of the connected socket `fd` (CLIENT KILL): its connection's
/// pending read returns end-of-file, and the connection closes itself.
///
/// The caller must hold the lock of the slot `fd` was read from (`ClientInfo::kill`): the
/// connection clears that slot, under the same lock, before it closes the fd, so `fd` is
/// still the connection's open socket here and never a number the kernel has reused.
pub fn shutdown_held(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    #[expect(unsafe_code, reason = "the socket is known only by its number in the registry")]
    // SAFETY: per this function's contract, `fd` is open for as long as the caller holds the
    // slot's lock, which outlives the BorrowedFd (dropped at the end of this function).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    socket2::SockRef::from(&borrowed).shutdown(std::net::Shutdown::Both)
}
