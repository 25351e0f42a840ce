//! One webhook message: the robot's JSON shape, POSTed over HTTP/1.1 (TLS for `https://`,
//! verified against the Mozilla roots), with short timeouts. Blocking: only the notification
//! thread calls it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use super::Notice;
use super::{NotifyEvent, Webhook, WebhookKind};
use crate::observe::access_log::push_json_str;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Where a webhook is.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    /// Parses `http://host[:port]/path?query` or `https://…`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "{url:?} is not an http:// or https:// address (copy the robot's webhook address)"
            ));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p
                    .parse()
                    .map_err(|_| format!("{url:?}: {p:?} is not a port"))?;
                (h, port)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("{url:?} names no host"));
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Target {
            tls,
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            path,
        })
    }
}

fn event_name(e: NotifyEvent) -> &'static str {
    match e {
        NotifyEvent::Expiring => "certificate_expiring",
        NotifyEvent::Rejected => "certificate_rejected",
        NotifyEvent::ReloadRefused => "reload_refused",
    }
}

/// The message body for `kind`.
pub fn body(kind: WebhookKind, host: &str, notices: &[Notice]) -> String {
    let mut text = format!(
        "menshen{}:",
        if host.is_empty() {
            String::new()
        } else {
            format!(" on {host}")
        }
    );
    for n in notices {
        text.push_str("\n- ");
        text.push_str(&n.text);
    }
    let mut out = String::new();
    match kind {
        WebhookKind::Wecom | WebhookKind::Dingtalk => {
            out.push_str("{\"msgtype\":\"text\",\"text\":{\"content\":");
            push_json_str(&mut out, &text);
            out.push_str("}}");
        }
        WebhookKind::Feishu => {
            out.push_str("{\"msg_type\":\"text\",\"content\":{\"text\":");
            push_json_str(&mut out, &text);
            out.push_str("}}");
        }
        WebhookKind::Json => {
            out.push_str("{\"host\":");
            push_json_str(&mut out, host);
            out.push_str(",\"text\":");
            push_json_str(&mut out, &text);
            out.push_str(",\"events\":[");
            for (i, n) in notices.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"event\":\"");
                out.push_str(event_name(n.event));
                out.push_str("\",\"message\":");
                push_json_str(&mut out, &n.text);
                out.push('}');
            }
            out.push_str("]}");
        }
    }
    out
}

/// Whether the robot's answer says it took the message: a 2xx status, and for the group robots
/// an error code of 0 in the body (they answer 200 to a bad key).
fn accepted(kind: WebhookKind, answer: &str) -> Result<(), String> {
    let status = answer.split(' ').nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(format!("HTTP status {status}"));
    }
    let body: String = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let code = match kind {
        WebhookKind::Wecom | WebhookKind::Dingtalk => "\"errcode\":",
        WebhookKind::Feishu => "\"code\":",
        WebhookKind::Json => return Ok(()),
    };
    match body.find(code) {
        Some(i) if !body[i + code.len()..].starts_with('0') => {
            Err(format!("the robot refused it: {body}"))
        }
        _ => Ok(()),
    }
}

/// Sends `notices` to `hook` as one message.
pub fn post(hook: &Webhook, host: &str, notices: &[Notice]) -> Result<(), String> {
    let target = Target::parse(&hook.url)?;
    let payload = body(hook.kind, host, notices);
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: menshen\r\n\r\n{payload}",
        target.path,
        target.host,
        payload.len()
    );
    let addr = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", target.host))?
        .next()
        .ok_or_else(|| format!("{} resolves to nothing", target.host))?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    tcp.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let answer = if target.tls {
        let config = crate::tls::client::client_config(
            webpki_root_certs::TLS_SERVER_ROOT_CERTS,
            true,
            false,
        )?;
        let name = crate::tls::client::server_name(&target.host)
            .ok_or_else(|| format!("{:?} is not a host name", target.host))?;
        let conn =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        exchange(rustls::StreamOwned::new(conn, tcp), &request)?
    } else {
        exchange(tcp, &request)?
    };
    accepted(hook.kind, &answer)
}

fn exchange<S: Read + Write>(mut s: S, request: &str) -> Result<String, String> {
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    s.flush().map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the peer closes (Connection: close), at most 64 KiB.
    while answer.len() < 65_536 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) if !answer.is_empty() => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Notice {
        Notice {
            event: NotifyEvent::Rejected,
            text: text.into(),
            once: None,
        }
    }

    #[test]
    fn each_robot_gets_its_shape() {
        let notices = [n("a \"b\"")];
        assert_eq!(
            body(WebhookKind::Wecom, "edge-1", &notices),
            r#"{"msgtype":"text","text":{"content":"menshen on edge-1:\n- a \"b\""}}"#
        );
        assert_eq!(
            body(WebhookKind::Feishu, "", &notices),
            r#"{"msg_type":"text","content":{"text":"menshen:\n- a \"b\""}}"#
        );
        assert_eq!(
            body(WebhookKind::Json, "h", &notices),
            r#"{"host":"h","text":"menshen on h:\n- a \"b\"","events":[{"event":"certificate_rejected","message":"a \"b\""}]}"#
        );
    }

    #[test]
    fn addresses_and_answers_are_read() {
        assert_eq!(
            Target::parse("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"),
            Ok(Target {
                tls: true,
                host: "qyapi.weixin.qq.com".into(),
                port: 443,
                path: "/cgi-bin/webhook/send?key=k".into()
            })
        );
        assert_eq!(
            Target::parse("http://127.0.0.1:9000").map(|t| (t.port, t.path)),
            Ok((9000, "/".to_owned()))
        );
        assert_eq!(
            Target::parse("ftp://x"),
            Err(
                "\"ftp://x\" is not an http:// or https:// address (copy the robot's webhook \
                 address)"
                    .into()
            )
        );
        let ok = "HTTP/1.1 200 OK\r\n\r\n{\"errcode\": 0, \"errmsg\": \"ok\"}";
        assert!(accepted(WebhookKind::Wecom, ok).is_ok());
        let bad = "HTTP/1.1 200 OK\r\n\r\n{\"errcode\":93000,\"errmsg\":\"invalid webhook url\"}";
        assert!(accepted(WebhookKind::Dingtalk, bad).is_err());
        assert!(accepted(
            WebhookKind::Feishu,
            "HTTP/1.1 200 OK\r\n\r\n{\"code\":19021}"
        )
        .is_err());
        assert_eq!(
            accepted(WebhookKind::Json, "HTTP/1.1 500 Oops\r\n\r\n"),
            Err("HTTP status 500".into())
        );
    }
}
