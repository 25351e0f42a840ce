//! The admin listener as an operator uses it: a config section with a reload token, `POST
//! /reload`, `/metrics` values and `/status.json`.
#![allow(dead_code)]

use super::http::{raw_plain, Response};

/// The reload token the config's `reload.token` file holds.
pub const TOKEN: &str = "s3cret-token";

/// Config lines for an admin listener on `port` that takes reloads with [`TOKEN`]; writes the
/// token file into `env`.
pub fn section(env: &super::Env, port: u16) -> String {
    env.write("reload.token", &format!("{TOKEN}\n"));
    format!("[admin]\naddr = \"127.0.0.1:{port}\"\nreload_token_file = \"reload.token\"\n")
}

/// `GET path` on the admin listener.
pub async fn get(port: u16, path: &str) -> Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n");
    raw_plain(port, raw.as_bytes(), None)
        .await
        .expect("admin request")
}

/// `POST /reload` with the token: the status and the JSON answer.
pub async fn reload(port: u16) -> (u16, serde_json::Value) {
    let raw = format!(
        "POST /reload HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let resp = raw_plain(port, raw.as_bytes(), None)
        .await
        .expect("POST /reload");
    let json = serde_json::from_str(&resp.text())
        .unwrap_or_else(|e| panic!("POST /reload answer is not JSON ({e}): {}", resp.text()));
    (resp.status, json)
}

/// `/status.json`.
pub async fn status(port: u16) -> serde_json::Value {
    let text = get(port, "/status.json").await.text();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("/status.json ({e}): {text}"))
}

/// The value of one series (`name{labels}` exactly as exposed) on `/metrics`.
pub async fn metric(port: u16, series: &str) -> Option<f64> {
    let text = get(port, "/metrics").await.text();
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// `menshen_reloads_total{result="..."}`.
pub async fn reloads(port: u16, result: &str) -> Option<f64> {
    metric(
        port,
        &format!("menshen_reloads_total{{result=\"{result}\"}}"),
    )
    .await
}
