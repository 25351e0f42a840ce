#!/usr/bin/env python3
"""Start time, memory and one-certificate swap latency for fleets of N sites, each with its own
certificate (examples/fleet.rs writes them).

For each N: start menshen on the fleet and time until a TLS handshake for the last site succeeds
(start), read its resident memory, then replace site 0's certificate and key --swaps times (each
file written beside and renamed over, as a careful operator or cert-manager does) and time until
a handshake for site 0 shows the new serial (swap), then edit site 0's fixed response in the
config as many times and time until it is served (edit). Prints one row per N: start seconds,
MiB after start and at the end, median and worst swap and edit seconds.

Usage (`make bench-scale` builds and runs it):
  benches/scale_bench.py [--binary target/release/menshen] [--sizes 10,1000,10000] [--swaps 5]
"""
import argparse, os, shutil, signal, socket, ssl, statistics, subprocess, sys, time

from bench_proc import rss_kib, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = "/tmp/menshen-scale"
HTTPS, HTTP = 16943, 16981


def served_body(host):
    """The body of `GET /` for `host` on the plain listener, or None."""
    try:
        with socket.create_connection(("127.0.0.1", HTTP), 2) as s:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.partition(b"\r\n\r\n")[2].decode(errors="replace")
    except OSError:
        return None


def served_serial(ca, host):
    """The serial (hex, upper case) of the certificate served for `host`, or None."""
    ctx = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection(("127.0.0.1", HTTPS), 2) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                return tls.getpeercert()["serialNumber"].upper().lstrip("0")
    except (OSError, ssl.SSLError, KeyError):
        return None


def wait_until(check, timeout):
    start = time.time()
    while time.time() - start < timeout:
        if check():
            return time.time() - start
        time.sleep(0.01)
    return None


def replace(src, dst):
    tmp = dst + ".swap"
    shutil.copyfile(src, tmp)
    os.rename(tmp, dst)


def run(binary, fleet, n, swaps, log):
    ca = f"{fleet}/approved/ca.pem"
    t0 = time.time()
    proc = subprocess.Popen([binary, "--config", f"{fleet}/menshen.toml"], stdout=log, stderr=log,
                            start_new_session=True)
    try:
        last = f"site-{n - 1}.example.cn"
        started = wait_until(lambda: served_serial(ca, last) is not None, 600)
        if started is None:
            sys.exit(f"N={n}: no handshake for {last}; see {WORK}/scale.log")
        start = time.time() - t0
        time.sleep(1)
        mib = rss_kib(proc.pid) / 1024
        latencies = []
        for k in range(swaps):
            want = format(1000 + k, "X")
            replace(f"{fleet}/spare/site-0-{k}.key", f"{fleet}/live/site-0.key")
            t = time.time()
            replace(f"{fleet}/spare/site-0-{k}.crt", f"{fleet}/live/site-0.crt")
            took = wait_until(lambda: served_serial(ca, "site-0.example.cn") == want, 120)
            if took is None:
                sys.exit(f"N={n}: swap {k} not served within 120 s; see {WORK}/scale.log")
            latencies.append(time.time() - t)
            time.sleep(0.5)
        # One site's config changed (its fixed response): the whole file is parsed again, the
        # certificates are not verified again.
        config = f"{fleet}/menshen.toml"
        text = open(config).read()
        edits = []
        for k in range(swaps):
            want = f"changed {k}"
            marker = 'name = "site-0"'
            head, _, tail = text.partition(marker)
            tail = tail.replace('respond = { body = "ok" }', f'respond = {{ body = "{want}" }}', 1)
            with open(config + ".swap", "w") as f:
                f.write(head + marker + tail)
            t = time.time()
            os.rename(config + ".swap", config)
            took = wait_until(lambda: served_body("site-0.example.cn") == want, 120)
            if took is None:
                sys.exit(f"N={n}: config edit {k} not served within 120 s; see {WORK}/scale.log")
            edits.append(time.time() - t)
            text = open(config).read().replace(f'body = "{want}"', 'body = "ok"', 1)
            time.sleep(0.5)
        after = rss_kib(proc.pid) / 1024
        return start, mib, after, latencies, edits
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "target", "release", "menshen"))
    ap.add_argument("--fleet", default=os.path.join(HERE, "..", "target", "release", "examples",
                                                     "fleet"))
    ap.add_argument("--sizes", default="10,1000,10000")
    ap.add_argument("--swaps", type=int, default=5)
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    log = open(f"{WORK}/scale.log", "ab")
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        fleet = f"{WORK}/n{n}"
        shutil.rmtree(fleet, ignore_errors=True)
        subprocess.run([a.fleet, fleet, str(n), str(a.swaps), str(HTTPS), str(HTTP)], check=True,
                       stdout=subprocess.DEVNULL)
        rows.append((n, *run(os.path.abspath(a.binary), fleet, n, a.swaps, log)))
    print(f"{'sites':>6} {'start s':>8} {'MiB':>7} {'MiB after':>9} {'cert swap s':>16} "
          f"{'site edit s':>16}")
    print(f"{'':>6} {'':>8} {'':>7} {'':>9} {'median / worst':>16} {'median / worst':>16}")
    for n, start, mib, after, lat, edits in rows:
        swap = f"{statistics.median(lat):.3f} / {max(lat):.3f}"
        edit = f"{statistics.median(edits):.3f} / {max(edits):.3f}"
        print(f"{n:>6} {start:>8.2f} {mib:>7.1f} {after:>9.1f} {swap:>16} {edit:>16}")


if __name__ == "__main__":
    main()
