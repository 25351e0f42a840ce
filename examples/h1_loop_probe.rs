//! A measurement probe, not a proxy: the CPU cost of the barest HTTP/1 keep-alive proxy loop on
//! pingora-core's sessions, to set beside menshen and nginx in one run.
//!
//! It listens on 127.0.0.1:16081 (the load bench's plain-HTTP port) with one worker thread and
//! forwards every request to the bench origin at 127.0.0.1:18080: read the request with
//! pingora-core's HTTP/1 server session, send it on an idle upstream connection with its client
//! session, copy the response back, keep both connections. No policy, no access log, no
//! retries, no idle-connection expiry. `PROBE_POOL=pingora` takes upstream connections from
//! pingora-core's pooled connector (what pingora-proxy uses) instead of a plain stack.
//!
//! What it showed (README, Performance): this loop cost about nginx's CPU per request, and
//! pingora's pool about 2 µs of the 8-10 µs that then separated it from menshen on
//! pingora-proxy; menshen's own loop (`src/proxy/h1/`) came of it. Kept as a measuring stick.
//!
//! ```sh
//! cargo build --release --example h1_loop_probe
//! taskset -c 0 target/release/examples/h1_loop_probe &
//! taskset -c 1 wrk -t1 -c64 -d5s http://127.0.0.1:16081/   # origin: the bench's nginx-backend
//! ```

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::connectors::http::v1::Connector;
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::protocols::http::v1::server::HttpSession as Downstream;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::listening::Service;
use pingora::upstreams::peer::HttpPeer;

const ORIGIN: &str = "127.0.0.1:18080";

struct Probe {
    idle: Mutex<Vec<Stream>>,
    pingora_pool: Option<Connector>,
    peer: HttpPeer,
}

impl Probe {
    /// An upstream session: pingora's pool, or an idle stream from the stack, or a new one.
    async fn upstream(&self) -> Option<Upstream> {
        if let Some(pool) = &self.pingora_pool {
            return pool.get_http_session(&self.peer).await.ok().map(|(s, _)| s);
        }
        let idle = self.idle.lock().ok()?.pop();
        let stream = match idle {
            Some(s) => s,
            None => {
                let tcp = tokio::net::TcpStream::connect(ORIGIN).await.ok()?;
                tcp.set_nodelay(true).ok()?;
                Box::new(L4Stream::from(tcp))
            }
        };
        Some(Upstream::new(stream))
    }

    async fn keep(&self, mut up: Upstream) {
        up.respect_keepalive();
        if let Some(pool) = &self.pingora_pool {
            return pool.release_http_session(up, &self.peer, None).await;
        }
        if let (Some(stream), Ok(mut idle)) = (up.reuse().await, self.idle.lock()) {
            idle.push(stream);
        }
    }

    /// One request and its response; `None` closes the connection.
    async fn one(&self, down: &mut Downstream) -> Option<()> {
        down.read_request().await.ok()??;
        let mut req = Box::new(down.req_header().clone());
        req.insert_header("x-forwarded-for", "127.0.0.1").ok()?;
        let mut up = self.upstream().await?;
        up.write_request_header(req).await.ok()?;
        up.finish_body().await.ok()?;
        up.read_response().await.ok()?;
        let resp = Box::new(up.resp_header()?.clone());
        down.write_response_header(resp).await.ok()?;
        while let Some(chunk) = up.read_body_bytes().await.ok()? {
            down.write_body(&chunk).await.ok()?;
        }
        down.finish_body().await.ok()?;
        self.keep(up).await;
        Some(())
    }
}

#[async_trait]
impl ServerApp for Probe {
    async fn process_new(self: &Arc<Self>, stream: Stream, _: &ShutdownWatch) -> Option<Stream> {
        let mut down = Downstream::new(stream);
        loop {
            down.set_server_keepalive(Some(60));
            self.one(&mut down).await?;
            let (stream, _) = down.reuse().await.ok()??.into_parts();
            down = Downstream::new(stream);
        }
    }
}

fn main() {
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let probe = Probe {
        idle: Mutex::new(Vec::new()),
        pingora_pool: (std::env::var("PROBE_POOL").as_deref() == Ok("pingora"))
            .then(|| Connector::new(None)),
        peer: HttpPeer::new(ORIGIN, false, String::new()),
    };
    let mut service = Service::new("h1 loop probe".into(), probe);
    service.add_tcp("127.0.0.1:16081");
    server.add_service(service);
    server.run_forever();
}
