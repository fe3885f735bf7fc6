//! The listening socket: SO_REUSEADDR (restart while old connections sit in TIME_WAIT, as
//! Redis does) and SO_REUSEPORT (every core binds the same port; the kernel spreads
//! connections). glommio's own `bind` sets only the latter, so the socket is built here and
//! handed to glommio. The one `unsafe` of the server crate lives here.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::IntoRawFd;

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
    Ok(from_listening_fd(fd))
}

#[expect(unsafe_code, reason = "glommio takes a listening socket only as a raw fd")]
fn from_listening_fd(fd: std::os::fd::RawFd) -> glommio::net::TcpListener {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` comes from `Socket::into_raw_fd` just above: an open, bound, listening TCP
    // socket that nothing else owns or will close, so the listener becomes its sole owner.
    // This runs on a glommio executor thread, which `from_raw_fd` needs for its reactor.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd) }
}
