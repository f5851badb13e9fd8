"""Shared plumbing for the TCP benchmarks (tcp_throughput, tcp_connrate).

Two namespace set-ups of the same shape, a client in one namespace and a
server across a virtual link:

  dpmail:  namespace A: kernel client on tap `dpm0` 198.18.0.1/24;
           dpmaild (net_tap) answers for 198.18.0.2 -- the lab of
           tests/integration/lab.py, reused as is.
  kernel:  namespace B: kernel client on veth `vk` 198.18.1.1/24;
           namespace C: veth `vd` 198.18.1.2/24 and bench/ksrv (an epoll
           echo/discard server on the kernel stack).

Owns: those namespaces (named dpm-<pid>-<n> like the lab's, so the lab's
stale-namespace sweep knows them), the processes started in them, and the
result file. Everything is removed on exit, error, Ctrl-C, SIGTERM or SIGHUP.

Must never: send traffic outside these namespaces, use addresses outside
198.18.0.0/15, or touch namespaces it did not create.
"""

import atexit
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BUILD = Path(os.environ.get("DPMAIL_BUILD", REPO / "build")).resolve()
RESULTS = BENCH / "results"
sys.path.insert(0, str(REPO / "tests" / "integration"))
import lab as labmod  # noqa: E402

DPMAIL_IP = labmod.DAEMON_IP            # 198.18.0.2
KCLIENT_IP = "198.18.1.1"
KSERVER_IP = "198.18.1.2"
ECHO, DISCARD = 7, 9

TOOLS = ("connrate", "ksrv", "blast")


def daemon_binary():
    return Path(os.environ.get("DPMAILD", BUILD / "mgmt" / "dpmaild"))


def tool(name):
    return str(BUILD / "bench" / name)


def die(msg):
    print(f"{Path(sys.argv[0]).name}: {msg}", file=sys.stderr)
    sys.exit(2)


def preflight():
    """Root, tools, and a build with the load tools and the daemon, built
    with ninja when missing or stale. If the daemon does not build (a tree
    in the middle of a change) but a binary exists, that binary is used,
    with a warning, and the result file says so."""
    global DAEMON_BUILD
    if os.geteuid() != 0:
        die("needs root (network namespaces)")
    for t in ("ip", "ethtool", "sysctl", "ping", "ninja"):
        if not shutil.which(t):
            die(f"`{t}` not found (scripts/install-deps installs it)")
    if not (BUILD / "build.ninja").exists():
        res = subprocess.run(["meson", "setup", str(BUILD)], cwd=REPO)
        if res.returncode != 0:
            die("meson setup failed")
    # ninja is a no-op when all is current; it rebuilds what is stale
    res = subprocess.run(["ninja", "-C", str(BUILD)] +
                         [f"bench/{t}" for t in TOOLS],
                         capture_output=True, text=True)
    if res.returncode != 0:
        die(f"building the load tools failed:\n{res.stdout[-3000:]}"
            f"{res.stderr[-3000:]}")
    if "DPMAILD" in os.environ:
        DAEMON_BUILD = f"given by DPMAILD={os.environ['DPMAILD']}"
    else:
        res = subprocess.run(["ninja", "-C", str(BUILD), "mgmt/dpmaild"],
                             capture_output=True, text=True)
        if res.returncode == 0:
            DAEMON_BUILD = "current"
        elif daemon_binary().is_file():
            DAEMON_BUILD = "stale: the tree did not build, existing binary used"
            print(f"warning: dpmaild does not build; benchmarking the "
                  f"existing {daemon_binary()} (older than the tree):"
                  f"\n{res.stdout[-1500:]}", file=sys.stderr)
        else:
            die(f"dpmaild build failed:\n{res.stdout[-3000:]}"
                f"{res.stderr[-3000:]}")
    if labmod.sanitizer_build():
        print("warning: DPMAIL_SANITIZER is set; figures are not meaningful",
              file=sys.stderr)


DAEMON_BUILD = None


def _fatal_signal(signum, frame):
    signal.signal(signum, signal.SIG_DFL)
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


_PAIRS = []


def cleanup_all():
    for p in list(_PAIRS):
        try:
            p.close()
        except Exception:
            pass
    labmod.cleanup_all()


def install_cleanup():
    atexit.register(cleanup_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _fatal_signal)
    removed = labmod.delete_stale_namespaces()
    if removed:
        print(f"removed stale namespaces {removed}", file=sys.stderr)


def _next_ns():
    labmod._SEQ[0] += 1
    return f"dpm-{os.getpid()}-{labmod._SEQ[0]}"


def ns_tuning(run):
    """Client-side settings for many short connections: all ports, and
    reuse of TIME-WAIT ports for new outgoing connections (timestamps)."""
    run(["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"])
    run(["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])


class KernelPair:
    """Namespaces B (client, vk 198.18.1.1) and C (server, vd 198.18.1.2)
    joined by a veth pair; `offload=False` turns TSO/GSO/GRO off on both
    ends, so the kernel moves MTU-sized packets as over dpmail's tap."""

    def __init__(self, offload=True):
        self.client_ns = None
        self.server_ns = None
        self.offload = offload
        self.server = None
        _PAIRS.append(self)

    def _run(self, ns, cmd, check=True, timeout=30):
        return labmod.sh(["ip", "netns", "exec", ns] + cmd, check=check,
                         timeout=timeout)

    def run_client(self, cmd, check=True, timeout=60):
        return self._run(self.client_ns, cmd, check, timeout)

    def start(self):
        self.client_ns = _next_ns()
        labmod.sh(["ip", "netns", "add", self.client_ns])
        self.server_ns = _next_ns()
        labmod.sh(["ip", "netns", "add", self.server_ns])
        for ns in (self.client_ns, self.server_ns):
            self._run(ns, ["ip", "link", "set", "lo", "up"])
            for key in ("all", "default"):
                self._run(ns, ["sysctl", "-qw",
                               f"net.ipv6.conf.{key}.disable_ipv6=1"])
        self._run(self.client_ns, ["ip", "link", "add", "vk", "type", "veth",
                                   "peer", "name", "vd"])
        self._run(self.client_ns, ["ip", "link", "set", "vd", "netns",
                                   self.server_ns])
        for ns, ifc, ip in ((self.client_ns, "vk", KCLIENT_IP),
                            (self.server_ns, "vd", KSERVER_IP)):
            if not self.offload:
                self._run(ns, ["ethtool", "-K", ifc, "tso", "off", "gso",
                               "off", "gro", "off"], check=False)
            self._run(ns, ["ip", "addr", "add", f"{ip}/24", "dev", ifc])
            self._run(ns, ["ip", "link", "set", ifc, "up"])
        ns_tuning(self.run_client)
        return self

    def start_server(self, mode, port, max_seconds=1800):
        """bench/ksrv in the server namespace; waits for its ready line."""
        self.stop_server()
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.server_ns, tool("ksrv"),
             "--addr", KSERVER_IP, "--port", str(port), "--mode", mode,
             "--max-seconds", str(max_seconds)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        line = self.server.stdout.readline()
        if "ksrv: ready" not in line:
            raise labmod.LabError(f"ksrv did not start: {line!r}")

    def stop_server(self):
        if self.server and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(timeout=5)
        self.server = None

    def close(self):
        self.stop_server()
        for ns in (self.client_ns, self.server_ns):
            if ns:
                labmod._delete_ns(ns)
        self.client_ns = self.server_ns = None
        if self in _PAIRS:
            _PAIRS.remove(self)


def parse_sets(items):
    """--set SECTION.KEY=VALUE options to {section: {key: value}}."""
    out = {}
    for it in items:
        key, sep, val = it.partition("=")
        sec, dot, k = key.partition(".")
        if not sep or not dot or not sec or not k:
            raise ValueError(f"--set {it!r}: want SECTION.KEY=VALUE")
        out.setdefault(sec.strip(), {})[k.strip()] = val.strip()
    return out


def start_dpmail(extra_conf, workdir):
    """The lab namespace with dpmaild on net_tap, client tuning applied.
    The daemon runs from a private copy, so a rebuild of the tree during
    the benchmark cannot swap it."""
    copy = Path(workdir) / "dpmaild"
    shutil.copy2(daemon_binary(), copy)
    os.environ["DPMAILD"] = str(copy)
    lab = labmod.Lab("tap", workdir, config=extra_conf)
    lab.start()
    ns_tuning(lambda cmd: lab.run(cmd))
    lab.ping(3, interval=0.2)           # ARP resolved before timing
    return lab


def run_json(runner, cmd, timeout):
    """Run a load tool through `runner` (lab.run or pair.run_client) and
    parse the JSON object on its last stdout line."""
    res = runner(cmd, check=False, timeout=timeout)
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise labmod.LabError(f"{cmd[0]} gave no result (rc "
                              f"{res.returncode})\nstdout: {res.stdout[-2000:]}"
                              f"\nstderr: {res.stderr[-2000:]}") from None


TCP_KEYS = ("retransmits", "rto_timeouts", "fast_retransmits", "dup_acks",
            "ooo_segments", "ooo_dropped", "out_of_window", "challenge_acks",
            "paws_dropped", "rst_rx", "rst_tx", "syn_backlog_full",
            "syncookies_sent", "conn_table_full", "drop_timeout",
            "persist_probes", "accepted", "closed", "timewait_reused")


def tcp_delta(before, after):
    """Non-zero tcp.* (and port tx_dropped) counter changes; gauges
    (tcp.live_conns) are left out."""
    d = labmod.counter_delta(before, after)
    return {k: v for k, v in d.items()
            if v and (k.startswith("tcp.") or k == "port.tx_dropped")
            and k != "tcp.live_conns"}


NSTAT_KEYS = ("TcpRetransSegs", "TcpExtTCPTimeouts", "TcpExtTCPLossProbes",
              "TcpExtTCPSackRecovery", "TcpExtTCPZeroWindowDrop",
              "TcpExtTCPWantZeroWindowAdv", "TcpOutRsts", "TcpEstabResets")


def nstat(runner):
    """The client namespace's kernel TCP counters (absolute, history left
    alone), for its side of the story: its retransmissions, RSTs..."""
    res = runner(["nstat", "-asz"] + list(NSTAT_KEYS), check=False,
                 timeout=10)
    out = {}
    for line in res.stdout.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] in NSTAT_KEYS and f[1].isdigit():
            out[f[0]] = int(f[1])
    return out


def nstat_delta(before, after):
    return {k: after.get(k, 0) - before.get(k, 0) for k in after
            if after.get(k, 0) - before.get(k, 0)}


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def machine():
    return {"host": platform.node(), "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(), "pmd": "net_tap",
            "hugepages": False}


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def write_result(name, data):
    RESULTS.mkdir(parents=True, exist_ok=True)
    ts = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{name}-{ts}.json"
    data = dict(data, bench=name, timestamp=ts, machine=machine(),
                git=_git_rev(), daemon_build=DAEMON_BUILD)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def _git_rev():
    res = subprocess.run(["git", "-C", str(REPO), "describe", "--always",
                          "--dirty"], capture_output=True, text=True)
    return res.stdout.strip() or None


def table(headers, rows):
    """Plain text table, columns sized to fit."""
    cells = [[str(h) for h in headers]] + \
        [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def workdir():
    return tempfile.mkdtemp(prefix="dpmail-bench-")


def sleep_settle(seconds=0.5):
    time.sleep(seconds)
