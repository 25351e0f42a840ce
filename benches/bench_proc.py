"""What the bench scripts read of the processes they run: ports that accept, CPU time, memory."""
import re, socket, subprocess, time, os

HZ = os.sysconf("SC_CLK_TCK")


def wait_port(port, timeout=30.0):
    """Whether something accepts on 127.0.0.1:`port` within `timeout` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def family(pid):
    """`pid` and its children (nginx's workers)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid] + [int(p) for p in out.split()]


def cpu_ticks(pid):
    """User and system CPU ticks of `pid` and its children."""
    total = 0
    for p in family(pid):
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def rss_kib(pid):
    """Resident memory of `pid` and its children, KiB."""
    total = 0
    for p in family(pid):
        try:
            m = re.search(r"^VmRSS:\s+(\d+) kB", open(f"/proc/{p}/status").read(), re.M)
            total += int(m.group(1)) if m else 0
        except OSError:
            pass
    return total
