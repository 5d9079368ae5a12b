use std::fmt;
use std::marker::PhantomData;

use futures::stream::{BufferUnordered, Map};
use futures::{Async, Future, IntoFuture, Poll, Stream};

use crate::limits::{yield_to_other_tasks, POLL_BUDGET};

/// A connection future whose outcome is turned into `Ok(())`, so that
/// `buffer_unordered` can carry it next to the stream's own error type `E`.
///
/// `then` with a function pointer would do the same, but it stores the
/// pointer and a second, already finished future in every connection:
/// 748 instead of 683 instructions per connection under callgrind, against
/// 677 for a bare `buffer_unordered` (README, "Performance").
struct Connection<F, E> {
    future: F,
    error_type: PhantomData<fn() -> E>,
}

/// The item type of the stream, once each item is a [`Connection`].
type Connections<S> = Map<
    S,
    fn(
        <S as Stream>::Item,
    ) -> Connection<<<S as Stream>::Item as IntoFuture>::Future, <S as Stream>::Error>,
>;

/// A future that runs one future per connection, at most a fixed number at
/// once.
///
/// Made by [`ListenExt::listen`](crate::ListenExt::listen). It resolves to
/// `Ok(())` when the stream has ended and every connection future has finished,
/// and to the stream's error if the stream fails. Errors of connection futures
/// are swallowed.
#[must_use = "futures do nothing unless polled"]
pub struct Listen<S>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    connections: BufferUnordered<Connections<S>>,
    max_connections: usize,
}

pub(crate) fn new<S>(stream: S, max_connections: usize) -> Listen<S>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    assert!(
        max_connections > 0,
        "listen(0) would never accept a connection and never resolve; \
         pass the maximum number of connections to serve at once (at least 1)"
    );
    let start: fn(S::Item) -> _ = start_connection::<S::Item, S::Error>;
    Listen {
        connections: stream.map(start).buffer_unordered(max_connections),
        max_connections,
    }
}

impl<S> Listen<S>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    /// The stream of connections.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{future, stream};
    /// use tk_listen::ListenExt;
    ///
    /// let connections = stream::iter_ok::<_, ()>(vec![future::ok::<(), ()>(())]);
    /// let server = connections.listen(10);
    /// let _connections = server.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        self.connections.get_ref().get_ref()
    }

    /// The stream of connections, mutably.
    ///
    /// Take care not to pull items out of it directly: those connections would
    /// never run.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{future, stream};
    /// use tk_listen::ListenExt;
    ///
    /// let connections = stream::iter_ok::<_, ()>(vec![future::ok::<(), ()>(())]);
    /// let mut server = connections.listen(10);
    /// let _connections = server.get_mut();
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        self.connections.get_mut().get_mut()
    }

    /// The stream of connections; connections in flight are dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{future, stream};
    /// use tk_listen::ListenExt;
    ///
    /// let connections = stream::iter_ok::<_, ()>(vec![future::ok::<(), ()>(())]);
    /// let server = connections.listen(10);
    /// let connections = server.into_inner(); // not started: nothing ran
    /// ```
    pub fn into_inner(self) -> S {
        self.connections.into_inner().into_inner()
    }
}

impl<S> Future for Listen<S>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    type Item = ();
    type Error = S::Error;

    fn poll(&mut self) -> Poll<(), S::Error> {
        // Connections that finish at once, accepted as fast as they come,
        // would keep this loop going for as long as clients arrive.
        for _ in 0..POLL_BUDGET {
            if try_ready!(self.connections.poll()).is_none() {
                return Ok(Async::Ready(()));
            }
        }
        Ok(yield_to_other_tasks())
    }
}

impl<S> fmt::Debug for Listen<S>
where
    S: Stream + fmt::Debug,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listen")
            .field("stream", self.get_ref())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

fn start_connection<C, E>(connection: C) -> Connection<C::Future, E>
where
    C: IntoFuture<Item = (), Error = ()>,
{
    Connection {
        future: connection.into_future(),
        error_type: PhantomData,
    }
}

impl<F, E> Future for Connection<F, E>
where
    F: Future<Item = (), Error = ()>,
{
    type Item = ();
    type Error = E;

    fn poll(&mut self) -> Poll<(), E> {
        match self.future.poll() {
            Ok(Async::NotReady) => Ok(Async::NotReady),
            Ok(Async::Ready(())) | Err(()) => Ok(Async::Ready(())),
        }
    }
}
