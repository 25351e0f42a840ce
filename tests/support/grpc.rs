//! An HTTP/2 backend that answers as a gRPC server does, over h2c or TLS (ALPN h2): a unary
//! call gets one message, a streaming call gets each DATA frame echoed as it arrives, and both
//! end with `grpc-status` in trailers. `/broken` sends its headers and resets the stream. It
//! keeps the fields of every request.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::origins::tls_acceptor;
use super::pki::Leaf;

pub struct GrpcBackend {
    pub port: u16,
    /// Path and fields of each request.
    pub seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcBackend {
    /// h2c, or TLS serving `leaf` when given.
    pub async fn start(tls: Option<&Leaf>) -> GrpcBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let acceptor = tls.map(|leaf| tls_acceptor(&leaf.pem, &leaf.key_pem, &[b"h2"]));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, log) = (acceptor.clone(), log.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                serve(tls, log).await;
                            }
                        }
                        None => serve(tcp, log).await,
                    }
                });
            }
        });
        GrpcBackend { port, seen, task }
    }

    pub fn last(&self) -> (String, HeaderMap) {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request")
    }
}

type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: S, seen: Seen) {
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((request, respond))) = conn.accept().await {
        tokio::spawn(call(request, respond, seen.clone()));
    }
}

async fn call(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    seen: Seen,
) {
    let (parts, mut body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    seen.lock()
        .expect("lock")
        .push((path.clone(), parts.headers.clone()));
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .expect("response");
    let Ok(mut send) = respond.send_response(response, false) else {
        return;
    };
    if path == "/broken" {
        let _ = send.send_data(Bytes::from_static(b"part"), false);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        send.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    }
    let streaming = path.ends_with("/Stream");
    let mut unary = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        if streaming {
            send.reserve_capacity(chunk.len());
            if send.send_data(chunk, false).is_err() {
                return;
            }
        } else {
            unary.extend_from_slice(&chunk);
        }
    }
    if !streaming {
        let mut reply = b"reply:".to_vec();
        reply.extend_from_slice(&unary);
        send.reserve_capacity(reply.len());
        let _ = send.send_data(Bytes::from(reply), false);
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().expect("value"));
    trailers.insert("grpc-message", "ok".parse().expect("value"));
    let _ = send.send_trailers(trailers);
}

/// A unary call of 4000 bytes on `client` that asks for gzip: status, `content-encoding`,
/// body, trailers.
pub async fn gzip_unary(
    client: &h2::client::SendRequest<bytes::Bytes>,
    path: &str,
) -> (u16, Option<String>, Vec<u8>, http::HeaderMap) {
    let request = http::Request::post(format!("https://example.cn{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("accept-encoding", "gzip")
        .body(())
        .expect("request");
    let mut client = client.clone().ready().await.expect("ready");
    let (response, mut upload) = client.send_request(request, false).expect("send");
    let message = Bytes::from(vec![b'a'; 4000]);
    upload.reserve_capacity(message.len());
    upload.send_data(message, true).expect("data");
    let (head, mut body) = response.await.expect("response").into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.expect("trailers").expect("some");
    let coding = head.headers.get("content-encoding");
    let coding = coding.map(|v| v.to_str().unwrap_or("?").to_owned());
    (head.status.as_u16(), coding, data, trailers)
}
