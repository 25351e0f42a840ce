#!/usr/bin/env python3
"""Memory per idle connection, menshen beside nginx: N keep-alive TLS connections (HTTP/1.1)
and then N HTTP/2 connections, each held open after one request, as mobile clients hold them.

For each target (on CPU 0, one worker, the configs of the side-by-side bench) and each kind of
connection, in a fresh process: let it serve a few requests (pools and caches warm), read the
resident memory of all its processes (VmRSS), open N connections and send one request on each
(HTTP/1.1 GET with keep-alive, or one HTTP/2 stream), wait for every response, let the process
settle, read the memory again, close everything. The figure is (after - before) / N, in KiB per connection; the last lines are
the menshen/nginx ratios.

Usage (needs nginx; run as root: it raises the file limit; `make bench-idle` builds and runs it):
  benches/idle_conns.py [--binary target/release/menshen] [--connections 5000]
"""
import argparse, os, re, resource, signal, socket, ssl, subprocess, sys, time

from bench_proc import rss_kib, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.environ.get("PEERS_DIR", os.path.join(HERE, "..", "..", "shared", "bench"))
WORK = "/tmp/menshen-bench"


def tls_context(alpn):
    ctx = ssl.create_default_context(cafile=f"{WORK}/certs/ca.pem")
    ctx.check_hostname = False
    ctx.set_alpn_protocols([alpn])
    return ctx


def read_http1_response(s):
    """Reads one response with a Content-Length; returns its status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed before the response")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    m = re.search(rb"content-length:\s*(\d+)", head, re.I)
    need = int(m.group(1)) if m else 0
    while len(rest) < need:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("body cut short")
        rest += chunk
    return int(head[9:12])


def frame(kind, flags, stream, payload):
    n = len(payload)
    return bytes([n >> 16 & 255, n >> 8 & 255, n & 255, kind, flags]) + stream.to_bytes(4, "big") \
        + payload


def literal(name, value):
    """An HPACK literal field without indexing, new name, no Huffman (short strings only)."""
    return bytes([0, len(name)]) + name + bytes([len(value)]) + value


H2_REQUEST = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"")
              + frame(1, 5, 1, literal(b":method", b"GET") + literal(b":scheme", b"https")
                      + literal(b":path", b"/") + literal(b":authority", b"localhost")))


def read_h2_response(s):
    """Reads frames until stream 1 ends; acknowledges the server's SETTINGS."""
    buf = b""
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed before the response")
            buf += chunk
        n = int.from_bytes(buf[:3], "big")
        kind, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        buf = buf[9 + n:]
        if kind == 4 and not flags & 1:
            s.sendall(frame(4, 1, 0, b""))
        if stream == 1 and kind in (0, 1) and flags & 1:
            return
        if kind in (3, 7):
            raise OSError("reset or GOAWAY")


def open_idle(port, n, alpn):
    """`n` TLS connections to `port`, one request answered on each; they stay open."""
    ctx = tls_context(alpn)
    conns = []
    for i in range(n):
        raw = socket.create_connection(("127.0.0.1", port), 10)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        if alpn == "h2":
            s.sendall(H2_REQUEST)
            read_h2_response(s)
        else:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            if read_http1_response(s) != 200:
                raise SystemExit(f"port {port}: not 200")
        conns.append(s)
    return conns


def measure(cmd, port, n, alpn, log):
    """KiB per idle connection of kind `alpn`, in a fresh process (freed memory of an earlier
    phase would be reused and hide the cost)."""
    proc = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=log, stderr=log,
                            start_new_session=True)
    try:
        if not wait_port(port):
            sys.exit(f"{cmd[0]} did not open {port}; see {WORK}/idle-conns.log")
        for c in open_idle(port, 20, alpn):
            c.close()
        time.sleep(1)
        before = rss_kib(proc.pid)
        conns = open_idle(port, n, alpn)
        time.sleep(2)
        after = rss_kib(proc.pid)
        for c in conns:
            c.close()
        return (after - before) / n
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "target", "release", "menshen"))
    ap.add_argument("--connections", type=int, default=5000)
    a = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * a.connections + 1024
    if hard != resource.RLIM_INFINITY and hard < want:
        sys.exit(f"the open-file limit is {hard}; {a.connections} connections need {want}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    os.makedirs(WORK, exist_ok=True)
    subprocess.run([f"{PEERS}/gen-certs.sh", f"{WORK}/certs"], check=True, capture_output=True)
    log = open(f"{WORK}/idle-conns.log", "ab")
    origin = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c",
                               os.path.abspath(f"{PEERS}/nginx-backend.conf")],
                              stdout=log, stderr=log, start_new_session=True)
    try:
        if not wait_port(18080):
            sys.exit(f"origin did not start; see {WORK}/idle-conns.log")
        targets = {
            "nginx": (["nginx", "-c", os.path.abspath(f"{PEERS}/nginx-proxy.conf")], 18443),
            "menshen": ([os.path.abspath(a.binary), "--config",
                         os.path.join(HERE, "peers.toml")], 16443),
        }
        results = {name: {} for name in targets}
        for alpn in ("http/1.1", "h2"):
            for name, (cmd, port) in targets.items():
                results[name][alpn] = measure(cmd, port, a.connections, alpn, log)
        nginx, menshen = results["nginx"], results["menshen"]
    finally:
        os.killpg(origin.pid, signal.SIGTERM)
        origin.wait(15)
    print(f"{a.connections} idle connections, one request each; KiB of resident memory each")
    print(f"{'':<10} {'TLS HTTP/1.1':>14} {'TLS HTTP/2':>12}")
    for name, r in (("nginx", nginx), ("menshen", menshen)):
        print(f"{name:<10} {r['http/1.1']:>14.1f} {r['h2']:>12.1f}")
    for alpn, label in (("http/1.1", "TLS HTTP/1.1"), ("h2", "TLS HTTP/2")):
        print(f"menshen/nginx memory per idle connection, {label}: "
              f"{menshen[alpn] / max(nginx[alpn], 0.1):.2f}")


if __name__ == "__main__":
    main()
