//! The `--metrics ADDR` listener of the tokio 1 HTTP examples (`hyper`,
//! `axum`): the metrics page on a listener of its own, with its own small
//! `listen`, so that a scrape is answered while every slot of the main
//! listener is taken. Each example includes this file with `#[path]`.

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tk_listen::tokio1::{incoming, Drain, ListenExt};
use tk_listen::Metrics;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

/// The content type of the Prometheus text format.
pub const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// At most this many scrapes at once; more wait in the backlog.
const SCRAPES: usize = 4;
/// A scrape's connection is closed this long after it was accepted.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(5);

/// `page` as an HTTP response body.
pub fn page_response(page: &Metrics) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(page.to_string())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_TYPE));
    response
}

/// Answers every request on `listener`, whatever its path, with `page`
/// (HTTP/1.1, one request per connection) until `drain` begins.
pub async fn serve_metrics(listener: TcpListener, page: Metrics, drain: Drain) {
    incoming(listener)
        .sleep_on_error(Duration::from_millis(100))
        .map(move |(socket, _peer)| {
            let page = page.clone();
            let service = service_fn(move |_request| {
                std::future::ready(Ok::<_, Infallible>(page_response(&page)))
            });
            let scrape = http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(socket), service);
            async move {
                match tokio::time::timeout(SCRAPE_DEADLINE, scrape).await {
                    Ok(served) => served.map_err(|e| log::debug!("metrics: {}", e)),
                    Err(_) => {
                        log::debug!("metrics: no request in {:?}", SCRAPE_DEADLINE);
                        Err(())
                    }
                }
            }
        })
        .listen(SCRAPES)
        .with_graceful_shutdown(drain)
        .await
}
