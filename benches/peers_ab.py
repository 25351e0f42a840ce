#!/usr/bin/env python3
"""Side-by-side A/B of several menshen binaries in one run of ../shared/bench/peers.py.

The bench machine's ratios to nginx move by up to 10% between runs an hour apart, so two
binaries are compared in the same run, round after round, against the same nginx. Each `NAME=CMD`
becomes a target of peers.py that starts menshen with CMD (the access log of the previous one
removed first); the ratios of every target to nginx are printed at the end.

  benches/peers_ab.py --rounds 2 \\
    old="/tmp/menshen-old --config benches/peers.toml" \\
    new="target/release/menshen --config benches/peers.toml"

Options before the pairs go to peers.py (`--rounds`, `--seconds`, `--scenarios`), but for
`--peers haproxy,caddy`: other proxies run in the same rounds (a four-target table and an A/B
from one run).
"""
import importlib.util
import json
import os
import sys
import tempfile

PEERS = os.environ.get("PEERS", os.path.join(os.path.dirname(__file__), "../../shared/bench/peers.py"))
PORTS = (16443, 16081)
LOG = "/tmp/menshen-bench/access.log*"


def main():
    args = sys.argv[1:]
    others = []
    if "--peers" in args:
        at = args.index("--peers")
        others = args[at + 1].split(",")
        del args[at:at + 2]
    pairs = [a for a in args if "=" in a and not a.startswith("-")]
    options = [a for a in args if a not in pairs]
    if not pairs:
        sys.exit(__doc__)
    spec = importlib.util.spec_from_file_location("peers", os.path.abspath(PEERS))
    peers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peers)
    names = []
    for pair in pairs:
        name, cmd = pair.split("=", 1)
        peers.TARGETS[name] = (["bash", "-c", f"rm -f {LOG}; exec {cmd}"], *PORTS)
        names.append(name)
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    sys.argv = ["peers.py", *options, "--targets", ",".join(["nginx", *others, *names]), "--json", out]
    peers.main()
    summary = json.load(open(out))["summary"]
    for name in names:
        ratios = ", ".join(f"{s} {summary[name][s]['cpu_us'] / summary['nginx'][s]['cpu_us']:.2f}"
                           for s in summary["nginx"])
        print(f"{name}/nginx cpu-per-request: {ratios}")


if __name__ == "__main__":
    main()
