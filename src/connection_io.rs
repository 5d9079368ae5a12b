//! The I/O forwarding of the connection wrappers that hold a slot
//! ([`PeerConnection`](crate::PeerConnection),
//! [`OpenConnection`](crate::OpenConnection)), written once.
//!
//! A macro rather than a shared generic wrapper: each wrapper is a public
//! struct of its own (with its own accessors and docs), and the I/O traits
//! are foreign, so a generic type could only serve both if the public names
//! were aliases of it, which would leave a private slot type in their
//! signatures. The macro keeps one text of the forwarding for both.

/// Implements, for `$wrapper<T>` whose socket is the field `$field`:
/// `Deref`/`DerefMut` to the socket, `std::io`'s `Read`, `BufRead` and
/// `Write`, tokio-io 0.1's `AsyncRead` and `AsyncWrite`, and with the
/// `tokio1` feature tokio 1's `AsyncRead`, `AsyncBufRead` and `AsyncWrite`
/// (vectored writes included), each when the socket has it.
macro_rules! forward_io {
    ($wrapper:ident, $field:ident) => {
        impl<T> ::std::ops::Deref for $wrapper<T> {
            type Target = T;

            fn deref(&self) -> &T {
                &self.$field
            }
        }

        impl<T> ::std::ops::DerefMut for $wrapper<T> {
            fn deref_mut(&mut self) -> &mut T {
                &mut self.$field
            }
        }

        impl<T: ::std::io::Read> ::std::io::Read for $wrapper<T> {
            fn read(&mut self, buf: &mut [u8]) -> ::std::io::Result<usize> {
                self.$field.read(buf)
            }
        }

        impl<T: ::std::io::BufRead> ::std::io::BufRead for $wrapper<T> {
            fn fill_buf(&mut self) -> ::std::io::Result<&[u8]> {
                self.$field.fill_buf()
            }

            fn consume(&mut self, amount: usize) {
                self.$field.consume(amount)
            }
        }

        impl<T: ::std::io::Write> ::std::io::Write for $wrapper<T> {
            fn write(&mut self, buf: &[u8]) -> ::std::io::Result<usize> {
                self.$field.write(buf)
            }

            fn flush(&mut self) -> ::std::io::Result<()> {
                self.$field.flush()
            }
        }

        impl<T: ::tokio_io::AsyncRead> ::tokio_io::AsyncRead for $wrapper<T> {
            fn poll_read(&mut self, buf: &mut [u8]) -> ::futures::Poll<usize, ::std::io::Error> {
                self.$field.poll_read(buf)
            }
        }

        impl<T: ::tokio_io::AsyncWrite> ::tokio_io::AsyncWrite for $wrapper<T> {
            fn poll_write(&mut self, buf: &[u8]) -> ::futures::Poll<usize, ::std::io::Error> {
                self.$field.poll_write(buf)
            }

            fn poll_flush(&mut self) -> ::futures::Poll<(), ::std::io::Error> {
                self.$field.poll_flush()
            }

            fn shutdown(&mut self) -> ::futures::Poll<(), ::std::io::Error> {
                self.$field.shutdown()
            }
        }

        #[cfg(feature = "tokio1")]
        impl<T: ::tokio::io::AsyncRead + Unpin> ::tokio::io::AsyncRead for $wrapper<T> {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut ::tokio::io::ReadBuf<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_read(cx, buf)
            }
        }

        #[cfg(feature = "tokio1")]
        impl<T: ::tokio::io::AsyncBufRead + Unpin> ::tokio::io::AsyncBufRead for $wrapper<T> {
            fn poll_fill_buf(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<&[u8]>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_fill_buf(cx)
            }

            fn consume(self: ::std::pin::Pin<&mut Self>, amount: usize) {
                ::std::pin::Pin::new(&mut self.get_mut().$field).consume(amount)
            }
        }

        #[cfg(feature = "tokio1")]
        impl<T: ::tokio::io::AsyncWrite + Unpin> ::tokio::io::AsyncWrite for $wrapper<T> {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_write(cx, buf)
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_flush(cx)
            }

            fn poll_shutdown(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$field.is_write_vectored()
            }
        }
    };
}

pub(crate) use forward_io;
