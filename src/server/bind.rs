//! Before the listeners are handed to pingora, which retries a taken address forever (logging
//! "will try again" while readiness probes reach the other process): each address is bound
//! once here, and a taken one stops the start with its listener, its address and, where
//! `/proc` shows it, the process that holds it.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};

use crate::snapshot::Listener;

/// `Err` naming every listener whose address cannot be bound, and why.
pub fn check(listeners: &[Listener]) -> anyhow::Result<()> {
    let mut problems = String::new();
    for l in listeners {
        let addr = l.addr;
        if let Err(e) = TcpListener::bind(addr) {
            let holder = match e.kind() {
                std::io::ErrorKind::AddrInUse => holder(addr)
                    .map(|(pid, name)| format!(" (held by {name}, pid {pid})"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let _ = writeln!(
                problems,
                "  listener {:?}: cannot listen on {addr}: {e}{holder}; stop that process or \
                 change listeners.addr",
                l.name
            );
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => anyhow::bail!("the listeners cannot start:\n{}", problems.trim_end()),
    }
}

/// The process listening on `addr`'s port: its pid and name, from `/proc/net/tcp{,6}` and the
/// processes' open sockets (only those this user may read).
fn holder(addr: SocketAddr) -> Option<(u32, String)> {
    let inodes = listening_inodes(addr.port());
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            let inode = link
                .strip_prefix("socket:[")
                .and_then(|l| l.strip_suffix(']'));
            if inode.is_some_and(|i| inodes.iter().any(|n| n == i)) {
                let name = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|n| n.trim().to_owned())
                    .unwrap_or_else(|_| "?".to_owned());
                return Some((pid, name));
            }
        }
    }
    None
}

/// Socket inodes in LISTEN state on `port`.
fn listening_inodes(port: u16) -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && local_port == Some(port) {
                inodes.push((*inode).to_owned());
            }
        }
    }
    inodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_address_is_refused_with_its_holder() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let listener = |addr: SocketAddr| Listener {
            name: "https".into(),
            addr,
            tls: false,
            proxy_protocol: false,
        };
        let e = check(&[listener(addr)]).expect_err("taken");
        let text = e.to_string();
        assert!(text.contains(&format!("cannot listen on {addr}")), "{text}");
        assert!(text.contains("listener \"https\""), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "names this process as the holder: {text}"
        );
        drop(taken);
        assert!(check(&[listener(addr)]).is_ok());
    }
}
