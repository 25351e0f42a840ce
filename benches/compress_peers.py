#!/usr/bin/env python3
"""Compressed responses, side by side: menshen's gzip against nginx's gzip at the same level.

Both proxies terminate TLS and proxy one origin (nginx, gzip off) that serves a 100 KiB HTML
page and a 108 KiB JSON document, generated here (the same bytes every run), text that compresses
about 6:1. nginx gets `gzip on`, `gzip_comp_level` equal to `gzip_level` in menshen's config
(benches/compress.toml, read here), `gzip_types text/html application/json`, `gzip_min_length`
equal to its `min_bytes`, `gzip_proxied any` and `gzip_vary on`. The method is
../shared/bench/peers.py's: each proxy on CPU 0 with one worker, the origin and wrk (`-H 'Accept-Encoding: gzip'`, keep-alive) on CPU 1; the figure that compares
them is the proxy's own CPU time per request (user+sys from /proc over the run, divided by the
requests wrk completed), with req/s and wrk's p99 beside it. Targets alternate round after round
and every figure is the median over the rounds.

Bytes per response are counted on one request per target and document, outside the timed runs:
the HTTP response as sent (status line, headers and body with its chunk framing; not the TLS
records), after checking that it is gzip and decompresses to the origin's document.

Usage (needs nginx, wrk, openssl and taskset; `make bench-compress` installs nginx and wrk):
  benches/compress_peers.py [--binary target/release/menshen] [--config benches/compress.toml]
                            [--rounds 3] [--seconds 6] [--connections 64]
Certificates come from gen-certs.sh in PEERS_DIR (default ../shared/bench).
"""
import argparse, gzip, json, os, random, re, signal, socket, ssl, statistics, subprocess, sys
import time, tomllib

from bench_proc import HZ, cpu_ticks, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.environ.get("PEERS_DIR", os.path.join(HERE, "..", "..", "shared", "bench"))
WORK = "/tmp/menshen-bench"
ORIGIN_PORT = 18090
MENSHEN_PORT = 16443
NGINX_PORT = 18445
DOCUMENTS = [("html", "/page.html"), ("json", "/data.json")]
SIZE = 100 * 1024


def nginx_conf(name, comment, http):
    """An nginx configuration: one worker in the foreground, its pid and log under WORK, no
    access log, and `http` inside the http block."""
    return f"""# {comment}
worker_processes 1;
daemon off;
pid {WORK}/compress-{name}.pid;
error_log {WORK}/compress-{name}-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
{http}}}
"""


ORIGIN_HTTP = f"""    include /etc/nginx/mime.types;
    gzip off;
    server {{
        listen 127.0.0.1:{ORIGIN_PORT} reuseport backlog=4096;
        root {WORK}/compress-www;
    }}
"""

PEER_HTTP = """    upstream origin {{ server 127.0.0.1:{origin}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port} ssl http2 reuseport backlog=4096;
        ssl_certificate {work}/certs/chain.pem;
        ssl_certificate_key {work}/certs/leaf.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        gzip on;
        gzip_comp_level {level};
        # text/html is always in gzip_types.
        gzip_types application/json;
        gzip_min_length {min_bytes};
        # menshen compresses whether or not a request came through another proxy.
        gzip_proxied any;
        gzip_vary on;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}
"""

WORDS = ("edge proxy border gateway mainland shop order cart price item user account region "
         "beijing shanghai shenzhen guangzhou chengdu hangzhou latency bandwidth cache header "
         "request response certificate filing compression stream backend origin").split()


def html_page(rng):
    """An HTML page of about SIZE bytes: a product table, as a shop's listing would be."""
    rows, size = [], 0
    while size < SIZE:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
        row = (f'<tr class="item"><td><a href="/item/{rng.randint(1, 99999)}">{words}</a></td>'
               f'<td class="price">{rng.randint(1, 9999)}.{rng.randint(0, 99):02d}</td>'
               f'<td>{rng.choice(WORDS)}</td></tr>\n')
        rows.append(row)
        size += len(row)
    return ("<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
            "<title>bench</title></head><body><table>\n" + "".join(rows) +
            "</table></body></html>\n")


def json_document(rng):
    """A JSON array of about SIZE bytes: orders, as an API would answer."""
    items, size = [], 0
    while size < SIZE:
        item = {"id": rng.randint(1, 10**9), "user": rng.choice(WORDS),
                "region": rng.choice(WORDS), "total": round(rng.uniform(1, 9999), 2),
                "items": [rng.choice(WORDS) for _ in range(rng.randint(1, 5))],
                "paid": rng.random() < 0.5}
        items.append(item)
        size += len(json.dumps(item, indent=1)) + 2
    return json.dumps(items, indent=1) + "\n"


def write_documents():
    """Writes the origin's documents (the same bytes every run); returns them by path."""
    rng = random.Random(14)
    docs = {"/page.html": html_page(rng).encode(), "/data.json": json_document(rng).encode()}
    os.makedirs(f"{WORK}/compress-www", exist_ok=True)
    for path, body in docs.items():
        with open(f"{WORK}/compress-www{path}", "wb") as f:
            f.write(body)
    return docs


def dechunk(body):
    """The payload of a chunked body."""
    out, rest = b"", body
    while True:
        line, _, rest = rest.partition(b"\r\n")
        n = int(line.split(b";")[0], 16)
        if n == 0:
            return out
        out, rest = out + rest[:n], rest[n + 2:]


def response_bytes(port, path, expected):
    """Bytes of one gzip response for `path` as sent, checked to decompress to `expected`."""
    ctx = ssl.create_default_context(cafile=f"{WORK}/certs/ca.pem")
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", port), 10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n"
                      "Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = head.decode("latin-1").lower()
    if not re.search(r"^content-encoding:\s*gzip", headers, re.M):
        sys.exit(f"port {port} {path}: the response is not gzip:\n{head.decode('latin-1')}")
    if re.search(r"^transfer-encoding:\s*chunked", headers, re.M):
        body = dechunk(body)
    if gzip.decompress(body) != expected:
        sys.exit(f"port {port} {path}: the gzip body does not decompress to the document")
    return len(data)


def wrk(port, path, conns, seconds):
    """Requests completed, p99 in ms and whether any failed, for `seconds` of keep-alive GETs."""
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s",
                          "--latency", "-H", "Accept-Encoding: gzip",
                          f"https://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True).stdout
    n = re.search(r"(\d+) requests in", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\b", out, re.M)
    p99ms = float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)] if p99 else None
    errors = bool(re.search(r"Non-2xx|Socket errors", out))
    return (int(n.group(1)) if n else 0), p99ms, errors


def start(cmd, cpu, log):
    return subprocess.Popen(["taskset", "-c", str(cpu), *cmd], stdout=log, stderr=log,
                            start_new_session=True)


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_target(cmd, port, docs, a, log):
    """One round of one target: each document's timed run, then its bytes per response."""
    proc = start(cmd, 0, log)
    try:
        if not wait_port(port):
            sys.exit(f"{cmd[0]} did not open {port}; see {WORK}/compress.log")
        out = {}
        for name, path in DOCUMENTS:
            t0 = cpu_ticks(proc.pid)
            n, p99, err = wrk(port, path, a.connections, a.seconds)
            t1 = cpu_ticks(proc.pid)
            us = (t1 - t0) * 1e6 / HZ / n if n else float("inf")
            out[name] = {"rps": n / a.seconds, "p99ms": p99, "cpu_us": us, "errors": err,
                         "bytes": response_bytes(port, path, docs[path])}
        return out
    finally:
        stop(proc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "target", "release", "menshen"))
    ap.add_argument("--config", default=os.path.join(HERE, "compress.toml"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--connections", type=int, default=64)
    a = ap.parse_args()
    compression = tomllib.load(open(a.config, "rb"))["sites"][0]["compression"]
    level = compression.get("gzip_level", 6)
    min_bytes = compression.get("min_bytes", 1024)
    os.makedirs(WORK, exist_ok=True)
    subprocess.run([f"{PEERS}/gen-certs.sh", f"{WORK}/certs"], check=True, capture_output=True)
    docs = write_documents()
    peer = PEER_HTTP.format(work=WORK, origin=ORIGIN_PORT, port=NGINX_PORT, level=level,
                            min_bytes=min_bytes)
    for name, comment, http in (
            ("origin", "Origin of the compression bench: static text, not compressed.", ORIGIN_HTTP),
            ("nginx", "Peer: nginx terminating TLS and gzipping at menshen's level.", peer)):
        with open(f"{WORK}/compress-{name}.conf", "w") as f:
            f.write(nginx_conf(name, comment, http))
    targets = {
        "nginx": (["nginx", "-c", f"{WORK}/compress-nginx.conf"], NGINX_PORT),
        "menshen": ([os.path.abspath(a.binary), "--config", os.path.abspath(a.config)],
                    MENSHEN_PORT),
    }
    log = open(f"{WORK}/compress.log", "ab")
    origin = start(["nginx", "-c", f"{WORK}/compress-origin.conf"], 1, log)
    results = {t: [] for t in targets}
    try:
        if not wait_port(ORIGIN_PORT):
            sys.exit(f"the origin did not start; see {WORK}/compress.log")
        for _ in range(a.rounds):
            for name, (cmd, port) in targets.items():
                results[name].append(run_target(cmd, port, docs, a, log))
                time.sleep(0.5)
    finally:
        stop(origin)
    report(results, docs, level, a)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def report(results, docs, level, a):
    print(f"{a.rounds} rounds x {a.seconds}s per document, {a.connections} TLS keep-alive "
          f"connections, gzip level {level}; medians. cpu-us/req = proxy CPU time per request")
    sizes = ", ".join(f"{name} {len(docs[path])} B" for name, path in DOCUMENTS)
    print(f"documents (uncompressed): {sizes}")
    print(f"{'target':<8}" + "".join(f" | {name + ': rps  p99ms  cpu-us/req  bytes/resp':>44}"
                                     for name, _ in DOCUMENTS))
    med = {}
    for t, rounds in results.items():
        med[t], row = {}, f"{t:<8}"
        for name, _ in DOCUMENTS:
            xs = [r[name] for r in rounds]
            m = {k: median([x[k] for x in xs if x[k] is not None])
                 for k in ("rps", "p99ms", "cpu_us", "bytes")}
            err = any(x["errors"] for x in xs)
            med[t][name] = m
            row += (f" | {m['rps']:>11.0f} {m['p99ms']:>7.2f} {m['cpu_us']:>10.1f} "
                    f"{m['bytes']:>11.0f}{'  ERR' if err else '     '}")
        print(row)
    for name, _ in DOCUMENTS:
        m, n = med["menshen"][name], med["nginx"][name]
        print(f"menshen/nginx {name}: cpu per request {m['cpu_us'] / n['cpu_us']:.2f}, "
              f"req/s {m['rps'] / n['rps']:.2f}, bytes per response {m['bytes'] / n['bytes']:.3f}")


if __name__ == "__main__":
    main()
