//! Time limits on I/O that cost nothing when the I/O is ready at once.

use std::future::Future;
use std::io;
use std::time::Duration;

/// Runs `io` with a time limit that costs no timer when `io` is ready at once.
pub(in crate::proxy) async fn within<T>(
    limit: Option<Duration>,
    io: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let mut io = std::pin::pin!(io);
    let Some(limit) = limit else {
        return io.await;
    };
    let first = std::future::poll_fn(|cx| match io.as_mut().poll(cx) {
        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await;
    if let Some(r) = first {
        return r;
    }
    match tokio::time::timeout(limit, io).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
    }
}
