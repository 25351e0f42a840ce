//! curl as the real client of the tests: HTTP/1.1 over plain TCP or HTTP/2 over TLS to a
//! test's proxy, the Host `example.cn` resolved to it, its decoders on when asked.

use super::Env;

/// What curl got: the response head it printed and the body it decoded.
pub struct Got {
    pub head: String,
    pub body: Vec<u8>,
}

impl Got {
    /// The last value of field `name` (lowercase) in the final response head.
    pub fn field(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}:");
        let lines = self.head.lines().rev();
        let mut last_head = lines.take_while(|l| !l.starts_with("HTTP/"));
        last_head
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    }
}

/// `curl` over `http` ("1.1" plain, "2" TLS) with its decoder on, sending `accept` (`None`:
/// no Accept-Encoding) and `extra` arguments.
pub async fn curl(
    env: &Env,
    root: &str,
    http: &str,
    path: &str,
    accept: Option<&str>,
    extra: &[&str],
) -> Got {
    curl_to(env, root, (http, "example.cn"), path, accept, extra).await
}

/// [`curl`] to `host` (resolved to the proxy) rather than `example.cn`.
pub async fn curl_to(
    env: &Env,
    root: &str,
    (http, host): (&str, &str),
    path: &str,
    accept: Option<&str>,
    extra: &[&str],
) -> Got {
    let dir = env.path("");
    let (head, body) = (dir.join("head.txt"), dir.join("body.bin"));
    let url = match http {
        "2" => format!("https://{host}:{}{path}", env.https),
        _ => format!("http://{host}:{}{path}", env.http),
    };
    let resolve = [
        format!("{host}:{}:127.0.0.1", env.https),
        format!("{host}:{}:127.0.0.1", env.http),
    ];
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args([
        "-sS",
        "--resolve",
        &resolve[0],
        "--resolve",
        &resolve[1],
        "--cacert",
        root,
    ])
    .arg(match http {
        "2" => "--http2",
        "1.0" => "--http1.0",
        _ => "--http1.1",
    })
    .arg("-D")
    .arg(&head)
    .arg("-o")
    .arg(&body)
    .args(extra);
    match accept {
        Some(a) => cmd.args(["--compressed", "-H", &format!("Accept-Encoding: {a}")]),
        None => cmd.args(["-H", "Accept-Encoding:"]),
    };
    let out = cmd
        .arg(&url)
        .output()
        .await
        .expect("curl runs (apt-get install curl)");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Got {
        head: std::fs::read_to_string(&head).expect("head"),
        body: std::fs::read(&body).unwrap_or_default(),
    }
}
