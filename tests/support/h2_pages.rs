//! An h2c origin that serves one page uncompressed, as a web application behind an HTTP/2
//! upstream does: `/page` with its length (a `Range` request gets 206 and the first ten
//! bytes), `/stream` without a length and with a trailer (`x-checksum: done`), `/no-transform`
//! with `Cache-Control: no-transform`. Each body goes as DATA frames of 3000 bytes. `/events`
//! is a stream of server-sent events: `data: one`, then `data: two` once the test calls
//! `release`.

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub struct H2Pages {
    pub port: u16,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for H2Pages {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl H2Pages {
    /// Serves `page` over h2c on a port of its own.
    pub async fn start(page: Vec<u8>) -> H2Pages {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let page = Bytes::from(page);
        let release = Arc::new(Notify::new());
        let events = release.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (page, events) = (page.clone(), events.clone());
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((request, respond))) = conn.accept().await {
                        if request.uri().path() == "/events" {
                            tokio::spawn(stream_events(respond, events.clone()));
                        } else {
                            tokio::spawn(answer(request, respond, page.clone()));
                        }
                    }
                });
            }
        });
        H2Pages {
            port,
            release,
            task,
        }
    }

    /// Lets one `/events` stream send its second event and end.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

async fn stream_events(mut respond: h2::server::SendResponse<Bytes>, release: Arc<Notify>) {
    let head = http::Response::builder()
        .header("content-type", "text/event-stream")
        .body(())
        .expect("head");
    let Ok(mut send) = respond.send_response(head, false) else {
        return;
    };
    send.reserve_capacity(64);
    let _ = send.send_data(Bytes::from_static(b"data: one\n\n"), false);
    release.notified().await;
    let _ = send.send_data(Bytes::from_static(b"data: two\n\n"), true);
}

async fn answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    page: Bytes,
) {
    let range = request.headers().contains_key("range");
    let path = request.uri().path().to_owned();
    let head = http::Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        .header("etag", "\"v1\"");
    let (head, body) = match path.as_str() {
        "/page" if range => (
            head.status(206)
                .header("content-range", format!("bytes 0-9/{}", page.len()))
                .header("content-length", "10"),
            page.slice(..10),
        ),
        "/page" => (
            head.status(200)
                .header("accept-ranges", "bytes")
                .header("content-length", page.len().to_string()),
            page,
        ),
        "/no-transform" => (
            head.status(200)
                .header("cache-control", "public, no-transform")
                .header("content-length", page.len().to_string()),
            page,
        ),
        _ => (head.status(200), page),
    };
    let Ok(mut send) = respond.send_response(head.body(()).expect("head"), false) else {
        return;
    };
    let mut at = 0;
    while at < body.len() {
        let part = body.slice(at..body.len().min(at + 3000));
        at += part.len();
        send.reserve_capacity(part.len());
        if send.send_data(part, false).is_err() {
            return;
        }
    }
    if path == "/stream" {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", "done".parse().expect("value"));
        let _ = send.send_trailers(trailers);
    } else {
        let _ = send.send_data(Bytes::new(), true);
    }
}
