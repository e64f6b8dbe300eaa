//! Listening sockets, and the TLS of outgoing HTTP.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// A listener whose accepted connections have Nagle's algorithm off
/// (`TCP_NODELAY`; Linux hands the option from the listening socket to the
/// sockets it accepts). Chat frames are small and latency-bound: with Nagle
/// on, an ack written while an earlier frame is unacknowledged waits for the
/// peer's delayed ACK — about 40 ms.
///
/// # Errors
/// When the address cannot be bound.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Makes ring the TLS provider of every HTTP client of the process (the
/// one async-nats already builds on). Call it before building a client;
/// calling it again does nothing.
pub fn install_tls_provider() {
    // Fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
