//! `tk_listen::tokio1::axum_listener`: what `axum::serve` gets from a stream
//! of connections (the peer's address as `ConnectInfo`, the local address),
//! and what it does when the stream ends.

mod support;
mod tokio1_support;

use std::future::IntoFuture;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use log::Level;
use tk_listen::tokio1::{axum_listener, Drain};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;
use tokio_stream::StreamExt;

use support::logs;
use tokio1_support::GENEROUS;

const LOCAL: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);
const PEER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)),
    4242,
);

/// Answers the peer's address as `ConnectInfo` has it.
fn app() -> Router {
    Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    )
}

/// One keep-alive request on `client`; the body of the answer.
async fn get_peer(client: &mut DuplexStream) -> String {
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: tk-listen\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0; 1024];
    let expected_end = PEER.to_string();
    while !answer.ends_with(expected_end.as_bytes()) {
        let n = tokio::time::timeout(GENEROUS, client.read(&mut buf))
            .await
            .expect("no answer in time")
            .unwrap();
        assert_ne!(
            n,
            0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{:?}", answer);
    answer.rsplit("\r\n\r\n").next().unwrap().to_string()
}

#[tokio::test]
async fn a_stream_that_ends_is_logged_once_the_open_connections_are_served_and_the_graceful_shutdown_still_returns(
) {
    logs::capture();
    let (mut client, server_side) = tokio::io::duplex(4096);
    let accepts = tokio_stream::iter(vec![(server_side, PEER)]);
    let (stop, stopped) = oneshot::channel::<()>();
    let serve = axum::serve(
        axum_listener(accepts, LOCAL),
        app().into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stopped.await;
    });
    assert_eq!(
        serve.local_addr().unwrap(),
        LOCAL,
        "the local address given"
    );
    let server = tokio::spawn(serve.into_future());

    // The handler sees the peer's address of the stream's item.
    assert_eq!(get_peer(&mut client).await, PEER.to_string());
    logs::wait_logged(&format!("the accept stream on {} ended", LOCAL));
    // The connection accepted before the end is still served.
    assert_eq!(get_peer(&mut client).await, PEER.to_string());
    assert!(
        !server.is_finished(),
        "axum::serve returned when the stream ended"
    );

    stop.send(()).unwrap();
    drop(client);
    tokio::time::timeout(GENEROUS, server)
        .await
        .expect("the graceful shutdown did not return")
        .unwrap()
        .unwrap();
    let errors: Vec<_> = logs::lines()
        .into_iter()
        .filter(|(level, line)| *level == Level::Error && line.contains("ended"))
        .collect();
    assert_eq!(errors.len(), 1, "logged once, at error: {:?}", errors);
}

#[tokio::test]
async fn a_drain_is_axums_graceful_shutdown_signal() {
    let (mut client, server_side) = tokio::io::duplex(4096);
    let accepts = tokio_stream::iter(vec![(server_side, PEER)]).chain(tokio_stream::pending());
    let drain = Drain::new(std::future::pending::<()>());
    let server = tokio::spawn(
        axum::serve(
            axum_listener(accepts, LOCAL),
            app().into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(drain.clone())
        .into_future(),
    );
    assert_eq!(get_peer(&mut client).await, PEER.to_string());

    drain.begin();
    // axum asks the idle keep-alive connection to close: the client reads
    // the end of the stream, and serve returns.
    let mut rest = Vec::new();
    tokio::time::timeout(GENEROUS, client.read_to_end(&mut rest))
        .await
        .expect("the idle connection stayed open")
        .unwrap();
    assert!(rest.is_empty(), "{:?}", rest);
    tokio::time::timeout(GENEROUS, server)
        .await
        .expect("serve did not return after the drain")
        .unwrap()
        .unwrap();
}
