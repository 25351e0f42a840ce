//! Notifications reach WeCom, DingTalk and Feishu robots and a JSON webhook (here: a local
//! receiver) when a certificate nears expiry, is rejected, or a reload is refused; they are
//! batched under `min_interval`, and a failing robot is counted, never in the way.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::admin;
use support::http::{handshake_serial, tls_client};
use support::pki::{Ca, LeafSpec};
use support::{eventually, free_port, Env};

/// A webhook receiver on loopback: every (path, body) it got, and what it answers per path.
#[derive(Clone)]
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    /// Answers `/fail…` with 500, `/refuse…` with a robot error code, others with errcode 0.
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let mut raw = Vec::new();
                let mut buf = [0u8; 8192];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let (path, body) = loop {
                    let Ok(n) = stream.read(&mut buf) else {
                        break (String::new(), String::new());
                    };
                    if n == 0 {
                        break (String::new(), String::new());
                    }
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                        break (path, body.to_owned());
                    }
                };
                let answer = if path.starts_with("/fail") {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_owned()
                } else {
                    let b = if path.starts_with("/refuse") {
                        "{\"errcode\":93000,\"errmsg\":\"invalid webhook url\"}"
                    } else {
                        "{\"errcode\":0,\"errmsg\":\"ok\"}"
                    };
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{b}", b.len())
                };
                let _ = stream.write_all(answer.as_bytes());
                if let Ok(mut g) = seen.lock() {
                    g.push((path, body));
                }
            }
        });
        Receiver { port, got }
    }

    fn bodies(&self, path: &str) -> Vec<serde_json::Value> {
        let got = self.got.lock().map(|g| g.clone()).unwrap_or_default();
        got.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| serde_json::from_str(b).unwrap_or_else(|e| panic!("{e}: {b}")))
            .collect()
    }

    /// Waits until `path` got a message whose text (`pick`) contains every one of `said`.
    async fn wait_for(
        &self,
        path: &str,
        pick: fn(&serde_json::Value) -> String,
        said: &[&str],
    ) -> bool {
        eventually(Duration::from_secs(8), || async {
            let all: String = self.bodies(path).iter().map(pick).collect();
            said.iter().all(|s| all.contains(s)).then_some(())
        })
        .await
        .is_some()
    }
}

fn text_of(v: &serde_json::Value) -> String {
    v["text"]["content"]
        .as_str()
        .or(v["content"]["text"].as_str())
        .or(v["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

use support::SHOP_SITE as SITE;

fn hooks(port: u16, interval: u64, paths: &[(&str, &str)]) -> String {
    let mut out = format!("[notify]\nmin_interval = \"{interval}s\"\n");
    for (kind, path) in paths {
        out.push_str(&format!(
            "[[notify.webhooks]]\nkind = \"{kind}\"\nurl = \"http://127.0.0.1:{port}{path}\"\n"
        ));
    }
    out
}

/// An expiring certificate that serves, and a rejected one beside it.
fn troubled_env() -> (Env, Ca) {
    let (env, root) = Env::with_approved_root("Approved Root");
    env.put_cert(
        "shop",
        &root.issue(&LeafSpec::new(&["shop.example.cn"], 0x11).valid(-300, 10)),
        &[],
    );
    env.put_leaf(
        "other",
        &Ca::root("Stranger Root"),
        "other.example.cn",
        0x12,
    );
    (env, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_robot_hears_of_expiry_rejection_and_a_refused_reload_in_its_shape() {
    let rx = Receiver::start();
    let (env, _) = troubled_env();
    let body = hooks(
        rx.port,
        0,
        &[
            ("wecom", "/wecom"),
            ("dingtalk", "/dingtalk"),
            ("feishu", "/feishu"),
            ("json", "/json"),
        ],
    );
    env.write_config("", format!("{body}{SITE}"));
    let (ok, out) = env.check();
    assert!(!ok, "the rejected file fails check: {out}");
    let proxy = env.start();
    let said = [
        "certificate ",
        "live/shop.crt",
        "expires in",
        "certificate rejected",
        "Stranger Root",
    ];
    for path in ["/wecom", "/dingtalk", "/feishu", "/json"] {
        assert!(
            rx.wait_for(path, text_of, &said).await,
            "{path}: {:?}\n{}",
            rx.bodies(path),
            proxy.log()
        );
    }
    let wecom = &rx.bodies("/wecom")[0];
    assert_eq!(wecom["msgtype"], "text");
    assert!(text_of(wecom).starts_with("menshen"), "{wecom}");
    assert_eq!(rx.bodies("/dingtalk")[0]["msgtype"], "text");
    assert_eq!(rx.bodies("/feishu")[0]["msg_type"], "text");
    let events: Vec<String> = rx
        .bodies("/json")
        .iter()
        .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        events.contains(&"certificate_expiring".to_owned()),
        "{events:?}"
    );
    assert!(
        events.contains(&"certificate_rejected".to_owned()),
        "{events:?}"
    );

    // A broken config: the reload is refused, and said so.
    env.write("menshen.toml", "[[listeners]\nbroken");
    assert!(
        rx.wait_for("/json", text_of, &["reload refused"]).await,
        "{:?}\n{}",
        rx.bodies("/json"),
        proxy.log()
    );
    // The config is mended: that reload warns of the expiry again, the robots are told once.
    env.write_config("", format!("{body}{SITE}"));
    let applied = eventually(Duration::from_secs(8), || async {
        proxy.log().contains("result=\"partial\"").then_some(())
    })
    .await;
    assert!(applied.is_some(), "{}", proxy.log());
    // Notices are sent in the order they were raised: once a later reload's refusal has
    // arrived, so has anything the mended reload raised.
    env.write_config("", format!("{body}{SITE}\n[second_break]\n"));
    assert!(
        rx.wait_for("/json", text_of, &["second_break"]).await,
        "{:?}\n{}",
        rx.bodies("/json"),
        proxy.log()
    );
    let expiring = rx
        .bodies("/json")
        .iter()
        .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["event"] == "certificate_expiring")
        .count();
    assert_eq!(expiring, 1, "{:?}", rx.bodies("/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_robots_are_counted_and_serving_goes_on() {
    let rx = Receiver::start();
    let (env, root) = troubled_env();
    let closed = free_port();
    let admin_port = free_port();
    let mut body = hooks(
        rx.port,
        0,
        &[("json", "/fail"), ("wecom", "/refuse"), ("feishu", "/ok")],
    );
    body.push_str(&format!(
        "[[notify.webhooks]]\nkind = \"dingtalk\"\nurl = \"http://127.0.0.1:{closed}/\"\n"
    ));
    env.write_config(
        "",
        format!("{}{body}{SITE}", admin::section(&env, admin_port)),
    );
    let proxy = env.start();
    assert!(
        rx.wait_for("/ok", text_of, &["certificate rejected"]).await,
        "{}",
        proxy.log()
    );
    for kind in ["json", "wecom", "dingtalk"] {
        let series = format!("menshen_notifications_failed_total{{kind=\"{kind}\"}}");
        let failed = eventually(Duration::from_secs(8), || async {
            admin::metric(admin_port, &series)
                .await
                .filter(|v| *v >= 1.0)
        })
        .await;
        assert!(failed.is_some(), "{series}: {}", proxy.log());
    }
    let sent = admin::metric(
        admin_port,
        "menshen_notifications_sent_total{kind=\"feishu\"}",
    )
    .await;
    assert_eq!(sent, Some(1.0));
    let client = tls_client(&[&root.pem]);
    let serial = handshake_serial(&client, env.https, "shop.example.cn").await;
    assert_eq!(serial.ok().as_deref(), Some("11"), "serving goes on");
    assert!(
        proxy.log().contains("notification not delivered"),
        "{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_happens_within_the_interval_goes_in_one_later_message() {
    let rx = Receiver::start();
    let (env, _) = troubled_env();
    let config = hooks(rx.port, 3, &[("json", "/json")]);
    env.write_config("", format!("{config}{SITE}"));
    let proxy = env.start();
    assert!(
        rx.wait_for("/json", text_of, &["certificate rejected"])
            .await,
        "{}",
        proxy.log()
    );
    // Two refused reloads, one after the other, within the interval.
    let refused = |needle: &'static str| {
        let proxy = &proxy;
        async move {
            eventually(Duration::from_secs(10), || async {
                let log = proxy.log();
                (log.contains(needle) && log.contains("result=\"rejected\"")).then_some(())
            })
            .await
        }
    };
    env.write("menshen.toml", "first_broken = [");
    assert!(refused("first_broken").await.is_some(), "{}", proxy.log());
    env.write("menshen.toml", "second_broken = {");
    assert!(refused("second_broken").await.is_some(), "{}", proxy.log());
    assert_eq!(
        rx.bodies("/json").len(),
        1,
        "held until the interval passes"
    );
    assert!(
        rx.wait_for("/json", text_of, &["first_broken", "second_broken"])
            .await,
        "{:?}\n{}",
        rx.bodies("/json"),
        proxy.log()
    );
    assert_eq!(rx.bodies("/json").len(), 2, "both refusals in one message");
}
