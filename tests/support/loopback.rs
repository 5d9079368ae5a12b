//! Clients from loopback addresses other than 127.0.0.1, so that a server
//! sees them as peers of their own; shared with the benches (by `#[path]`).
//! Linux routes all of 127.0.0.0/8 to the loopback interface; macOS and the
//! BSDs have only 127.0.0.1 there unless it is given more.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// A blocking client bound to `source` (any port), connected to `server`
/// within `timeout`.
pub fn connect_from_ip(source: Ipv4Addr, server: SocketAddr, timeout: Duration) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let source = SocketAddr::from((source, 0));
    socket
        .bind(&source.into())
        .expect("bind a loopback address");
    socket
        .connect_timeout(&server.into(), timeout)
        .expect("connect");
    socket.into()
}
