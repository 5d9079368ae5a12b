//! `tk_listen::tokio1::Drain`: watched connections learn that the graceful
//! shutdown began, on an idle, a busy and a full server, on both runtime
//! flavours; the drain deadline drops what is left; and a hyper 1 server
//! written with it closes an idle HTTP/1.1 keep-alive connection at once
//! while a request in flight (from `curl`) completes.

mod support;
mod tokio1_support;

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tk_listen::tokio1::{Drain, ListenExt};
use tokio::sync::oneshot;
use tokio_stream::{Stream, StreamExt};

use tokio1_support::{
    init_logging, poll_once, run, stream_fn, CountingNotify, Flavour, Server, FLAVOURS, GENEROUS,
};

/// A connection that runs until told to stop; says when it was first
/// polled.
struct UntilTold {
    told: bool,
    started: Option<oneshot::Sender<()>>,
}

impl Future for UntilTold {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if let Some(started) = self.started.take() {
            let _ = started.send(());
        }
        if self.told {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

type Watched = tk_listen::tokio1::Watch<UntilTold, fn(Pin<&mut UntilTold>)>;

/// A watched connection that is idle until told; counts the telling in
/// `told`.
fn idle(drain: &Drain, started: Option<oneshot::Sender<()>>) -> Watched {
    let conn = UntilTold {
        told: false,
        started,
    };
    drain.watch(conn, |conn| conn.get_mut().told = true)
}

/// A connection that ends at once.
fn quick(drain: &Drain) -> Watched {
    let conn = UntilTold {
        told: true,
        started: None,
    };
    drain.watch(conn, |_| {})
}

/// Runs a server of `slots` slots whose first `idle_count` connections are
/// idle and watched, followed by `more` (busy: clients for ever; or none),
/// begins the drain once the idle ones run, and checks that the server
/// resolves with every one of them told.
fn drains(flavour: Flavour, slots: usize, idle_count: usize, busy: bool) {
    let drain = Drain::new(std::future::pending::<()>());
    let mut started = Vec::new();
    let mut first = Vec::new();
    for _ in 0..idle_count {
        let (tx, rx) = oneshot::channel();
        first.push(idle(&drain, Some(tx)));
        started.push(rx);
    }
    let accepted = Arc::new(AtomicUsize::new(0));
    let more = {
        let drain = drain.clone();
        let accepted = accepted.clone();
        stream_fn(move |_| {
            if busy {
                accepted.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Some(quick(&drain)))
            } else {
                Poll::Pending
            }
        })
    };
    let accepts = tokio_stream::iter(first).chain(more);
    let server = accepts.listen(slots).with_graceful_shutdown(drain.clone());
    let stats = server.stats();
    run(flavour, async move {
        let server = tokio::spawn(server);
        for started in started {
            started.await.unwrap();
        }
        assert!(stats.running() >= idle_count as u64, "{:?}", stats);
        drain.begin();
        server.await.unwrap();
        assert_eq!(stats.running(), 0, "{:?}: {:?}", flavour, stats);
        assert_eq!(stats.aborted(), 0, "{:?}: {:?}", flavour, stats);
        if slots == idle_count {
            assert_eq!(
                stats.started(),
                slots as u64,
                "{:?}: full, yet accepted",
                flavour
            );
        }
    });
    if busy && slots > idle_count {
        assert!(accepted.load(Ordering::Relaxed) > 0, "not busy");
    }
}

#[test]
fn an_idle_connection_learns_of_the_drain_on_an_idle_server() {
    init_logging();
    for flavour in FLAVOURS {
        drains(flavour, 10, 1, false);
    }
}

#[test]
fn an_idle_connection_learns_of_the_drain_on_a_busy_server() {
    init_logging();
    for flavour in FLAVOURS {
        drains(flavour, 10, 1, true);
    }
}

#[test]
fn idle_connections_learn_of_the_drain_on_a_full_server() {
    init_logging();
    for flavour in FLAVOURS {
        drains(flavour, 3, 3, true);
    }
}

/// A connection polled by another task than before (moved, as `select!`
/// or a hand-off may do) has the drain wake the task that polled it last.
#[test]
fn the_drain_wakes_the_task_that_polled_a_connection_last() {
    let drain = Drain::new(std::future::pending::<()>());
    let mut conn = drain.watch(std::future::pending::<()>(), |_: Pin<&mut _>| {});
    let (first, first_waker) = CountingNotify::waker();
    let (second, second_waker) = CountingNotify::waker();
    assert!(poll_once(&mut conn, &first_waker).is_pending());
    assert!(poll_once(&mut conn, &second_waker).is_pending());
    drain.begin();
    assert_eq!(second.count(), 1, "the last task is woken");
    assert_eq!(first.count(), 0, "the task before it is not");
}

/// A shutdown signal that says when it was first polled: from inside its
/// poll, so that a poll by another `Drain` clone comes after.
struct SaysWhenPolled {
    signal: oneshot::Receiver<()>,
    polled: Option<oneshot::Sender<()>>,
}

impl Future for SaysWhenPolled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let fired = Pin::new(&mut self.signal).poll(cx).is_ready();
        if let Some(polled) = self.polled.take() {
            let _ = polled.send(());
        }
        if fired {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// The shutdown signal keeps only the waker that polled it last. A clone of
/// the drain awaited by another task in a `select!` whose other branch
/// wins, and so dropped, must not take the signal's wake-up with it: the
/// server, which polled the drain before, is woken and drains.
#[test]
fn the_signal_ends_the_server_after_a_clone_awaited_by_another_task_is_dropped() {
    init_logging();
    for flavour in FLAVOURS {
        let (stop, stopped) = oneshot::channel::<()>();
        let (polled, first_polled) = oneshot::channel();
        let drain = Drain::new(SaysWhenPolled {
            signal: stopped,
            polled: Some(polled),
        });
        let accepts =
            tokio_stream::iter(vec![idle(&drain, None)]).chain(stream_fn(|_| Poll::Pending));
        let server = accepts.listen(10).with_graceful_shutdown(drain.clone());
        let stats = server.stats();
        run(flavour, async move {
            let server = tokio::spawn(server);
            first_polled.await.unwrap();
            tokio::select! {
                biased;
                () = drain.clone() => panic!("{:?}: begun before the signal", flavour),
                () = std::future::ready(()) => {}
            }
            stop.send(()).unwrap();
            server.await.unwrap();
            assert!(drain.is_draining());
            assert_eq!((stats.finished(), stats.running()), (1, 0), "{:?}", flavour);
        });
    }
}

/// Hand-polled: a clone polled by another waker, which then stops polling
/// it, leaves both wakers woken by the signal, and the first drains.
#[test]
fn the_signal_wakes_a_clone_polled_before_another_one() {
    let (stop, stopped) = oneshot::channel::<()>();
    let drain = Drain::new(stopped);
    let mut first = drain.clone();
    let mut second = drain.clone();
    let (first_woken, first_waker) = CountingNotify::waker();
    let (second_woken, second_waker) = CountingNotify::waker();
    assert!(poll_once(&mut first, &first_waker).is_pending());
    assert!(poll_once(&mut second, &second_waker).is_pending());
    stop.send(()).unwrap();
    assert_eq!((first_woken.count(), second_woken.count()), (1, 1));
    assert!(poll_once(&mut first, &first_waker).is_ready());
    assert!(drain.is_draining());
}

/// A signal that wakes its task during its own poll (as one that yields
/// once does) wakes the `Drain` that polls it, even on its first poll.
#[test]
fn a_signal_that_wakes_during_the_first_poll_is_polled_again() {
    let mut yielded = false;
    let drain = Drain::new(std::future::poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }));
    let mut polled = drain.clone();
    let (woken, waker) = CountingNotify::waker();
    assert!(poll_once(&mut polled, &waker).is_pending());
    assert_eq!(woken.count(), 1, "woken during its poll");
    assert!(poll_once(&mut polled, &waker).is_ready());
    assert!(drain.is_draining());
}

/// A task whose cooperative budget is spent (a busy accept loop, say) has
/// the polls of tokio's resources refused, each with a wake-up of its
/// waker. The signal's waker is the drain's own, which wakes every task
/// waiting on a `Drain`: the signal is polled outside the budget, so that
/// those tasks are not woken for nothing at every such poll.
#[test]
fn a_drain_polled_on_a_spent_budget_does_not_wake_the_other_drains() {
    const WAITING: usize = 20;
    const ROUNDS: usize = 10;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (stop, stopped) = oneshot::channel::<()>();
        let drain = Drain::new(stopped);
        let polls = Arc::new(AtomicUsize::new(0));
        let waiting: Vec<_> = (0..WAITING)
            .map(|_| {
                let mut drain = drain.clone();
                let polls = polls.clone();
                tokio::spawn(std::future::poll_fn(move |cx| {
                    polls.fetch_add(1, Ordering::SeqCst);
                    Pin::new(&mut drain).poll(cx)
                }))
            })
            .collect();
        // Each waiting task polls once, and waits.
        for _ in 0..100 * WAITING {
            if polls.load(Ordering::SeqCst) == WAITING {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(polls.load(Ordering::SeqCst), WAITING, "each polled once");
        let mut busy = drain.clone();
        for _ in 0..ROUNDS {
            std::future::poll_fn(|cx| {
                while let Poll::Ready(progress) = tokio::task::coop::poll_proceed(cx) {
                    progress.made_progress();
                }
                assert!(Pin::new(&mut busy).poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            // Lets any task woken run.
            tokio::task::yield_now().await;
        }
        assert_eq!(polls.load(Ordering::SeqCst), WAITING, "no task woken");
        stop.send(()).unwrap();
        for task in waiting {
            let ended = tokio::time::timeout(GENEROUS, task).await;
            assert!(matches!(ended, Ok(Ok(()))), "each waiting task drains");
        }
        assert!(drain.is_draining());
    });
}

#[test]
fn the_drain_deadline_drops_what_is_left_counts_it_as_aborted_and_resolves() {
    init_logging();
    for flavour in FLAVOURS {
        let (stop, stopped) = oneshot::channel::<()>();
        let mut stop = Some(stop);
        let mut started = 0;
        // Ten connections that never end; then the stream fires the signal.
        let accepts = stream_fn(move |_| {
            if started < 10 {
                started += 1;
                return Poll::Ready(Some(std::future::pending::<()>()));
            }
            if let Some(stop) = stop.take() {
                let _ = stop.send(());
            }
            Poll::Pending
        });
        let deadline = Duration::from_millis(50);
        let server = accepts
            .listen(11)
            .with_graceful_shutdown(stopped)
            .drain_deadline(deadline);
        let stats = server.stats();
        let at_the_end = stats.clone();
        let took = run(flavour, async move {
            let begun = Instant::now();
            let mut server = server;
            (&mut server).await;
            // Read before the server is dropped (which would abort them too).
            assert_eq!((at_the_end.aborted(), at_the_end.running()), (10, 0));
            begun.elapsed()
        });
        assert!(took >= deadline, "{:?}: resolved after {:?}", flavour, took);
        assert_eq!(
            (stats.started(), stats.aborted(), stats.running()),
            (10, 10, 0),
            "{:?}",
            flavour
        );
        assert_eq!(stats.durations().count(), 10, "{:?}", flavour);
    }
}

#[test]
fn a_drain_that_ends_before_its_deadline_resolves_at_once() {
    init_logging();
    for flavour in FLAVOURS {
        let drain = Drain::new(std::future::pending::<()>());
        let idle: Vec<_> = (0..5).map(|_| idle(&drain, None)).collect();
        let begin = drain.clone();
        let accepts = tokio_stream::iter(idle).chain(stream_fn(move |_| {
            begin.begin();
            Poll::Pending
        }));
        let server = accepts
            .listen(10)
            .with_graceful_shutdown(drain)
            .drain_deadline(GENEROUS * 100);
        let stats = server.stats();
        run(flavour, server);
        assert_eq!((stats.finished(), stats.aborted()), (5, 0), "{:?}", flavour);
    }
}

/// A child process killed and reaped when dropped.
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn wait(mut self) -> std::process::Output {
        self.0.take().unwrap().wait_with_output().expect("curl ran")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

mod http {
    use std::convert::Infallible;
    use std::sync::{mpsc, Arc, Mutex};

    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use tk_listen::tokio1::{incoming, Drain, ListenExt};
    use tk_listen::ListenStats;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;
    use tokio_stream::StreamExt;

    /// `/slow` says it was entered, then waits for `release`; anything
    /// else answers at once.
    pub struct Routes {
        pub entered: mpsc::Sender<()>,
        pub release: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
    }

    /// The server of the docs of `Drain`, with `/slow`.
    pub async fn serve(
        listener: TcpListener,
        drain: Drain,
        routes: Routes,
        stats: mpsc::Sender<ListenStats>,
    ) {
        let routes = Arc::new(routes);
        let builder = Builder::new(TokioExecutor::new());
        let watching = drain.clone();
        let server = incoming(listener)
            .sleep_on_error(std::time::Duration::from_millis(100))
            .map(move |(socket, _peer)| {
                let routes = routes.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let routes = routes.clone();
                    async move {
                        if request.uri().path() == "/slow" {
                            let _ = routes.entered.send(());
                            let release = routes.release.lock().unwrap().take();
                            if let Some(release) = release {
                                let _ = release.await;
                            }
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello\n"))))
                    }
                });
                let conn = builder.serve_connection(TokioIo::new(socket), service);
                watching.watch(conn.into_owned(), |conn| conn.graceful_shutdown())
            })
            .listen(100)
            .with_graceful_shutdown(drain);
        stats.send(server.stats()).unwrap();
        server.await;
    }
}

/// Reads one HTTP/1.1 response of `hello\n` (6 bytes of body) from a
/// keep-alive connection.
fn read_response(client: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let mut buf = [0; 1024];
    while !String::from_utf8_lossy(&response).ends_with("hello\n") {
        let n = client.read(&mut buf).expect("read a response");
        assert!(
            n > 0,
            "closed before the response: {:?}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(response).unwrap()
}

#[test]
fn a_hyper_server_closes_an_idle_keep_alive_connection_at_once_and_finishes_the_request_in_flight()
{
    init_logging();
    for flavour in FLAVOURS {
        let (stop, stopped) = oneshot::channel::<()>();
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = oneshot::channel::<()>();
        let (stats_tx, stats) = mpsc::channel();
        let routes = http::Routes {
            entered: entered_tx,
            release: Arc::new(Mutex::new(Some(release_rx))),
        };
        let server = Server::start(flavour, move |listener| {
            http::serve(listener, Drain::new(stopped), routes, stats_tx)
        });
        let stats = stats.recv_timeout(GENEROUS).unwrap();
        let addr = server.addr;

        // An idle keep-alive client, after one request.
        let mut idle = TcpStream::connect(addr).unwrap();
        idle.set_read_timeout(Some(GENEROUS)).unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let response = read_response(&mut idle);
        assert!(response.starts_with("HTTP/1.1 200"), "{}", response);

        // A request in flight.
        let curl = Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--max-time",
                &GENEROUS.as_secs().to_string(),
            ])
            .arg(format!("http://{}/slow", addr))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run curl; install it (.ci/run does: apt-get install curl)");
        let curl = KillOnDrop(Some(curl));
        entered
            .recv_timeout(GENEROUS)
            .expect("the slow request arrived");

        stop.send(()).unwrap();
        // The idle one is closed while the slow request is still in flight.
        let mut rest = Vec::new();
        let closed = idle.read_to_end(&mut rest);
        assert!(closed.is_ok(), "{:?}: not closed: {:?}", flavour, closed);
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        // The idle one is counted as it ends, just after its socket closed.
        let counted = Instant::now();
        while stats.running() > 1 && counted.elapsed() < GENEROUS {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(stats.running(), 1, "{:?}: {:?}", flavour, stats);
        assert!(
            !server.is_finished(),
            "{:?}: resolved with a request in flight",
            flavour
        );

        release.send(()).unwrap();
        let output = curl.wait();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.stdout, b"hello\n");
        server.wait();
        assert_eq!(
            (stats.finished(), stats.aborted(), stats.running()),
            (2, 0, 0),
            "{:?}: {:?}",
            flavour,
            stats
        );
    }
}

/// A stream of accepts that counts its polls and says when it is dropped.
struct CountedAccepts {
    polls: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

impl Stream for CountedAccepts {
    type Item = u32;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<u32>> {
        Poll::Ready(Some(self.polls.fetch_add(1, Ordering::SeqCst) as u32))
    }
}

impl Drop for CountedAccepts {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[test]
fn stop_accepting_never_polls_the_accepts_again_once_the_drain_began() {
    let (polls, dropped) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let drain = Drain::new(stopped);
    let mut accepts = drain.stop_accepting(CountedAccepts {
        polls: polls.clone(),
        dropped: dropped.clone(),
    });
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert_eq!(
        Pin::new(&mut accepts).poll_next(&mut cx),
        Poll::Ready(Some(0))
    );
    // The signal fires and the server's `Drain` (axum's signal task)
    // begins the drain, before any connection is told.
    stop.send(()).unwrap();
    assert_eq!(Pin::new(&mut drain.clone()).poll(&mut cx), Poll::Ready(()));
    assert_eq!(Pin::new(&mut accepts).poll_next(&mut cx), Poll::Pending);
    assert!(drain.is_draining());
    assert!(dropped.load(Ordering::SeqCst), "the accepts were kept");
    assert_eq!(Pin::new(&mut accepts).poll_next(&mut cx), Poll::Pending);
    assert_eq!(polls.load(Ordering::SeqCst), 1);
}

#[test]
fn stop_accepting_stops_at_a_drain_begun_by_hand() {
    let (polls, dropped) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let drain = Drain::new(std::future::pending::<()>());
    let mut accepts = drain.stop_accepting(CountedAccepts {
        polls: polls.clone(),
        dropped: dropped.clone(),
    });
    let mut cx = Context::from_waker(std::task::Waker::noop());
    drain.begin();
    assert_eq!(Pin::new(&mut accepts).poll_next(&mut cx), Poll::Pending);
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(polls.load(Ordering::SeqCst), 0);
}
