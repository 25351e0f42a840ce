#!/usr/bin/env python3
"""Full TLS handshakes, like for like: proxy CPU time per handshake, menshen beside nginx.

Why this exists beside ../shared/bench/peers.py: its `tls-handshake` scenario shares each
handshake with an accept, a proxied request and a close, with wrk as the client. Here
`openssl s_time -new` clients do nothing but full handshakes (never offering a session): ECDHE
X25519, an ECDSA P-256 signature, TLS 1.3 with the suite the server's settings pick
(benches/peers.toml: menshen's default order, AES-128-GCM; nginx follows the client's order,
AES-256-GCM for OpenSSL clients).

Each target runs on CPU 0 (one worker), `--clients` s_time processes on CPU 1; targets alternate
round after round and every figure is the median over the rounds.

Usage (needs nginx and openssl; `make bench` runs it after peers.py, which makes the certs):
  benches/full_handshake.py [--binary target/release/menshen] [--rounds 3] [--seconds 5]
                            [--variant NAME=CONFIG ...]
"""
import argparse, os, re, signal, statistics, subprocess, sys, time

from bench_proc import HZ, cpu_ticks, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.environ.get("PEERS_DIR", os.path.join(HERE, "..", "..", "shared", "bench"))
WORK = "/tmp/menshen-bench"


def handshakes(port, clients, seconds):
    """Runs `clients` s_time processes at once; returns the handshakes they completed."""
    procs = [subprocess.Popen(["taskset", "-c", "1", "openssl", "s_time", "-connect",
                               f"127.0.0.1:{port}", "-new", "-time", str(seconds)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(clients)]
    total = 0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 30)
        m = re.search(r"^(\d+) connections in [\d.]+ real seconds", out, re.M)
        total += int(m.group(1)) if m else 0
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "target", "release", "menshen"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=CONFIG",
                    help="also run menshen with this config (as menshen:NAME), e.g. to compare "
                         "TLS settings in one run")
    a = ap.parse_args()
    subprocess.run([f"{PEERS}/gen-certs.sh", f"{WORK}/certs"], check=True, capture_output=True)
    targets = {
        "nginx": (["nginx", "-c", os.path.abspath(f"{PEERS}/nginx-proxy.conf")], 18443),
        "menshen": ([os.path.abspath(a.binary), "--config",
                     os.path.join(HERE, "peers.toml")], 16443),
    }
    for v in a.variant:
        name, _, config = v.partition("=")
        targets[f"menshen:{name}"] = ([os.path.abspath(a.binary), "--config",
                                       os.path.abspath(config)], 16443)
    results = {t: [] for t in targets}
    log = open(f"{WORK}/full-handshake.log", "ab")
    for _ in range(a.rounds):
        for name, (cmd, port) in targets.items():
            proc = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=log, stderr=log,
                                    start_new_session=True)
            try:
                if not wait_port(port):
                    sys.exit(f"{name} did not open {port}; see {WORK}/full-handshake.log")
                t0 = cpu_ticks(proc.pid)
                n = handshakes(port, a.clients, a.seconds)
                t1 = cpu_ticks(proc.pid)
                if n == 0:
                    sys.exit(f"{name}: no handshake completed")
                results[name].append(((t1 - t0) * 1e6 / HZ / n, n / a.seconds))
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(15)
            time.sleep(0.5)
    print(f"{a.rounds} rounds x {a.seconds}s, {a.clients} openssl s_time -new clients; medians")
    med = {}
    for name, xs in results.items():
        med[name] = statistics.median(x[0] for x in xs)
        rate = statistics.median(x[1] for x in xs)
        print(f"{name:<8} {rate:>8.0f} handshakes/s {med[name]:>8.1f} cpu-us/handshake")
    for name in med:
        if name.startswith("menshen"):
            print(f"{name}/nginx cpu per full handshake {med[name] / med['nginx']:.2f}")


if __name__ == "__main__":
    main()
