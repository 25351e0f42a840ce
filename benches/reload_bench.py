#!/usr/bin/env python3
"""Reload under load: wrk at full load while the certificate is replaced ten times and the config
twice. Reports requests lost (must be zero) and the time from a file change to the new
certificate (or route) being served.

Usage (as root; needs nginx, wrk, openssl; `make bench` runs it):
  benches/reload_bench.py [--binary target/release/menshen] [--seconds 30]

The proxy runs on CPU 0, the origin (nginx) and the load on CPU 1, like ../shared/bench/peers.py.
"""
import argparse, os, re, shutil, signal, socket, ssl, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = "/tmp/menshen-reload-bench"
TLS_PORT, PLAIN_PORT, ORIGIN_PORT = 17443, 17081, 18080


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def make_ca():
    sh("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{WORK}/ca.key")
    sh("openssl", "req", "-x509", "-new", "-key", f"{WORK}/ca.key", "-sha256", "-days", "30",
       "-subj", "/CN=Reload Bench Root", "-out", f"{WORK}/ca.pem")


def issue(serial):
    """A leaf with this serial, written key first then certificate, each by rename."""
    key, csr, crt = f"{WORK}/leaf.key", f"{WORK}/leaf.csr", f"{WORK}/leaf.crt"
    sh("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    sh("openssl", "req", "-new", "-key", key, "-subj", "/CN=localhost", "-out", csr)
    with open(f"{WORK}/ext.cnf", "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    sh("openssl", "x509", "-req", "-in", csr, "-CA", f"{WORK}/ca.pem", "-CAkey", f"{WORK}/ca.key",
       "-set_serial", str(serial), "-days", "10", "-sha256", "-extfile", f"{WORK}/ext.cnf", "-out", crt)
    os.replace(key, f"{WORK}/live/bench.key")
    os.replace(crt, f"{WORK}/live/bench.crt")


def config(body):
    return f"""
[server]
threads = 1
grace_period = "1s"
[[listeners]]
name = "https"
addr = "127.0.0.1:{TLS_PORT}"
tls = true
[[listeners]]
name = "http"
addr = "127.0.0.1:{PLAIN_PORT}"
[tls]
approved_cas = ["{WORK}/ca.pem"]
certificates = ["{WORK}/live"]
default_certificate = "bench"
[reload]
poll_interval = "1s"
[access_log]
path = "{WORK}/access.log"
[[upstreams]]
name = "origin"
backends = ["127.0.0.1:{ORIGIN_PORT}"]
[[sites]]
name = "bench"
icp = "京ICP备16063439号-1"
hosts = ["127.0.0.1", "localhost"]
[[sites.routes]]
prefix = "/"
upstream = "origin"
[[sites.routes]]
prefix = "/version"
respond = {{ body = "{body}" }}
"""


def write_config(body):
    tmp = f"{WORK}/menshen.toml.tmp"
    with open(tmp, "w") as f:
        f.write(config(body))
    os.replace(tmp, f"{WORK}/menshen.toml")


def served_serial():
    ctx = ssl.create_default_context(cafile=f"{WORK}/ca.pem")
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", TLS_PORT), 2) as s:
        with ctx.wrap_socket(s) as t:
            der = t.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                         capture_output=True).stdout.decode()
    return int(out.strip().split("=")[1], 16)


def version():
    with socket.create_connection(("127.0.0.1", PLAIN_PORT), 2) as s:
        s.sendall(b"GET /version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[-1].decode()


def wait_for(check, timeout=10.0):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.01)
    return None


def wrk_errors(out):
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    lost = int(non2xx.group(1)) if non2xx else 0
    if sock:
        lost += sum(int(x) for x in sock.groups())
    return (int(total.group(1)) if total else 0), lost


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "target", "release", "menshen"))
    ap.add_argument("--seconds", type=int, default=30)
    a = ap.parse_args()
    for tool in ("nginx", "wrk", "openssl"):
        if not shutil.which(tool):
            subprocess.run(["apt-get", "install", "-y", "-qq", tool], check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(f"{WORK}/live")
    make_ca()
    serial = 1000
    issue(serial)
    write_config("v0")
    log = open(f"{WORK}/servers.log", "ab")
    os.makedirs("/tmp/menshen-bench", exist_ok=True)
    origin = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c",
                               os.path.join(HERE, "..", "..", "shared", "bench", "nginx-backend.conf")],
                              stdout=log, stderr=log, start_new_session=True)
    proxy = subprocess.Popen(["taskset", "-c", "0", a.binary, "--config", f"{WORK}/menshen.toml"],
                             stdout=log, stderr=log, start_new_session=True)
    procs = [origin, proxy]
    try:
        if wait_for(lambda: served_serial() == serial, 20) is None:
            sys.exit(f"menshen did not serve; see {WORK}/servers.log")
        wrk_cmd = lambda conns, extra: subprocess.Popen(
            ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{a.seconds}s", *extra,
             f"https://127.0.0.1:{TLS_PORT}/"], stdout=subprocess.PIPE, text=True)
        keepalive = wrk_cmd(64, [])
        handshakes = wrk_cmd(8, ["-H", "Connection: close"])
        time.sleep(2)
        cert_times, config_times = [], []
        for i in range(10):
            serial += 1
            issue(serial)
            cert_times.append(wait_for(lambda: served_serial() == serial))
            if i in (3, 7):
                body = f"v{i}"
                write_config(body)
                config_times.append(wait_for(lambda: version() == body))
            time.sleep(a.seconds / 14)
        ka_out, hs_out = keepalive.communicate()[0], handshakes.communicate()[0]
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
    ka_total, ka_lost = wrk_errors(ka_out)
    hs_total, hs_lost = wrk_errors(hs_out)
    fmt = lambda xs: ("missed " if None in xs else "") + ", ".join(
        f"{x * 1000:.0f}" for x in xs if x is not None)
    ok = [x for x in cert_times if x is not None]
    print(f"certificate replaced 10 times, config twice, under {a.seconds}s of load")
    print(f"keep-alive requests: {ka_total}, lost: {ka_lost}")
    print(f"new-connection requests: {hs_total}, lost: {hs_lost}")
    print(f"file change -> new certificate served (ms): {fmt(cert_times)}")
    if ok:
        print(f"  median {statistics.median(ok) * 1000:.0f} ms, max {max(ok) * 1000:.0f} ms")
    print(f"config change -> new route served (ms): {fmt(config_times)}")
    lost = ka_lost + hs_lost + cert_times.count(None) + config_times.count(None)
    print("requests lost: " + str(ka_lost + hs_lost))
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
