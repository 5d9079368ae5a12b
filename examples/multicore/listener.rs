//! The listening socket of `examples/multicore/main.rs`, shared with
//! `benches/multicore.rs` (included with `#[path]`).

use std::io;
use std::net::{self, SocketAddr};

use socket2::{Domain, Socket, Type};

/// A listening socket on `addr` with `SO_REUSEPORT` (and `SO_REUSEADDR`) set,
/// so that several of them, one per thread, can share the address; the
/// kernel spreads new connections over them.
///
/// Any process of the same user can bind the same address this way and take
/// a share of the connections: a second copy of a server started by mistake
/// gets no "address in use" error.
pub fn reuseport_listener(addr: &SocketAddr) -> io::Result<net::TcpListener> {
    let socket = Socket::new(Domain::for_address(*addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&(*addr).into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
