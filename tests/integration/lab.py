"""The network lab: one network namespace and one dpmaild per test.

Owns: the namespace `dpm-<pid>-<n>`, the daemon process started in it, the
generated config and log, and the kernel end of the link (tap `dpm0`, or a
veth pair `vk`/`vd` for af_packet). Everything it creates it removes again,
pass, fail or interruption (see `cleanup_all`, wired to atexit and signals by
conftest.py).

Must never: send traffic outside the namespaces it creates, use addresses
outside 198.18.0.0/15, or touch namespaces and processes it did not create
(stale `dpm-<pid>-*` namespaces are removed only when <pid> is dead).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONF = REPO / "etc" / "dpmail.conf"
LSAN_SUPP = REPO / "tests" / "lsan.supp"

KERNEL_IP = "198.18.0.1"
DAEMON_IP = "198.18.0.2"
PREFIX_LEN = 24
BROADCAST_IP = "198.18.0.255"

PMDS = ("tap", "af_packet")

READY_RE = re.compile(r"dpmaild: ready")
HEADER_RE = re.compile(r"dpmaild: counters")
COUNTER_RE = re.compile(r"^\s+([a-z][a-z0-9_]*\.[a-z0-9_]+)\s+(\d+)\s*$")
MAC_RE = re.compile(r"\bmac=([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})\b")
SANITIZER_RE = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:")
NS_RE = re.compile(r"^dpm-(\d+)-\d+$")

# Every counter the daemon promises to print (0 included).
EXPECTED_COUNTERS = """
port.rx_packets port.tx_packets port.tx_dropped
eth.rx eth.truncated eth.not_for_us eth.unknown_type eth.ipv6 eth.vlan
arp.rx arp.malformed arp.rx_request arp.rx_reply arp.tx_request arp.tx_reply
arp.not_for_us arp.learned arp.resolve_timeout arp.hold_dropped arp.table_full
arp.tx_gratuitous
ip.rx ip.tx ip.truncated ip.bad_version ip.bad_ihl ip.bad_length
ip.bad_checksum ip.ttl_zero ip.fragment ip.options ip.bad_options
ip.not_for_us ip.bad_source ip.unknown_proto
icmp.rx icmp.truncated icmp.bad_checksum icmp.rx_echo_request
icmp.tx_echo_reply icmp.rx_other icmp.tx_unreach icmp.ratelimited
icmp.echo_broadcast_ignored
""".split()


class LabError(Exception):
    """The lab or the daemon did not behave; message carries the evidence."""


def sanitizer_build():
    return os.environ.get("DPMAIL_SANITIZER", "") not in ("", "0", "no")


def daemon_binary():
    return Path(os.environ.get("DPMAILD", REPO / "build" / "mgmt" / "dpmaild"))


def selected_pmds():
    """PMDs to run, from DPMAIL_PMDS (comma separated), default both."""
    raw = os.environ.get("DPMAIL_PMDS", "")
    pmds = [p.strip() for p in raw.split(",") if p.strip()] or list(PMDS)
    bad = [p for p in pmds if p not in PMDS]
    if bad:
        raise LabError(f"DPMAIL_PMDS: unknown PMD(s) {bad}; known: {PMDS}")
    return pmds


def sh(cmd, check=True, timeout=30, **kw):
    """Run a command in the root namespace (only ip/sysctl housekeeping)."""
    res = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise LabError(f"command failed ({res.returncode}): {' '.join(cmd)}\n"
                       f"stdout: {res.stdout}\nstderr: {res.stderr}")
    return res


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces():
    res = sh(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]


def _kill_ns_processes(ns, sig=signal.SIGKILL):
    res = sh(["ip", "netns", "pids", ns], check=False)
    for tok in res.stdout.split():
        try:
            os.kill(int(tok), sig)
        except (ValueError, ProcessLookupError, PermissionError):
            pass


def _delete_ns(ns):
    _kill_ns_processes(ns)
    for _ in range(20):
        res = sh(["ip", "netns", "del", ns], check=False)
        if res.returncode == 0 or ns not in list_namespaces():
            break
        time.sleep(0.1)
    dpdk_run = Path("/var/run/dpdk") / ns   # our file_prefix == ns name
    shutil.rmtree(dpdk_run, ignore_errors=True)


def delete_stale_namespaces():
    """Remove dpm-<pid>-<n> namespaces whose creating pytest is dead."""
    removed = []
    for ns in list_namespaces():
        m = NS_RE.match(ns)
        if m and not _pid_alive(int(m.group(1))):
            _delete_ns(ns)
            removed.append(ns)
    return removed


def parse_counter_table(text):
    """Counters of the newest table in `text` (after the last header)."""
    lines = text.splitlines()
    last = None
    for i, line in enumerate(lines):
        if HEADER_RE.search(line):
            last = i
    if last is None:
        return None
    out = {}
    for line in lines[last + 1:]:
        m = COUNTER_RE.match(line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def counter_delta(before, after):
    return {k: after.get(k, 0) - before.get(k, 0)
            for k in sorted(set(before) | set(after))}


# ---------------------------------------------------------------- ping & co

PING_SUMMARY_RE = re.compile(
    r"(\d+) packets transmitted, (\d+) (?:packets )?received"
    r"(?:, \+(\d+) duplicates)?(?:, \+(\d+) errors)?, ([\d.]+)% packet loss")
PING_RTT_RE = re.compile(
    r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")


def parse_ping(output):
    m = PING_SUMMARY_RE.search(output)
    if not m:
        raise LabError(f"cannot parse ping output:\n{output}")
    res = {
        "transmitted": int(m.group(1)),
        "received": int(m.group(2)),
        "duplicates": int(m.group(3) or 0),
        "errors": int(m.group(4) or 0),
        "loss_pct": float(m.group(5)),
    }
    r = PING_RTT_RE.search(output)
    if r:
        res.update(rtt_min_ms=float(r.group(1)), rtt_avg_ms=float(r.group(2)),
                   rtt_max_ms=float(r.group(3)), rtt_mdev_ms=float(r.group(4)))
    return res


def parse_arping(output):
    """Replies counted by Habets arping ("N packets received") or iputils
    arping ("Received N response(s)")."""
    m = re.search(r"(\d+) packets received", output)
    if not m:
        m = re.search(r"Received (\d+) response", output)
    if not m:
        raise LabError(f"cannot parse arping output:\n{output}")
    return int(m.group(1))


_ARPING_FLAVOUR = None


def arping_flavour():
    """'habets' (Debian package `arping`) or 'iputils' (iputils-arping)."""
    global _ARPING_FLAVOUR
    if _ARPING_FLAVOUR is None:
        res = subprocess.run(["arping", "--help"], capture_output=True,
                             text=True, timeout=10)
        text = res.stdout + res.stderr
        _ARPING_FLAVOUR = "habets" if "Habets" in text or "-i interface" in text \
            else "iputils"
    return _ARPING_FLAVOUR


def record_result(name, data):
    """Append a figure to $DPMAIL_RESULTS/<name>.json when that dir is set."""
    d = os.environ.get("DPMAIL_RESULTS")
    if not d:
        return None
    path = Path(d)
    path.mkdir(parents=True, exist_ok=True)
    fn = path / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".json")
    fn.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return fn


# ---------------------------------------------------------------- the lab

_LABS = []               # live labs, for cleanup_all()
_LABS_LOCK = threading.Lock()
_SEQ = [0]


def cleanup_all():
    """Emergency cleanup: kill every daemon, delete every namespace we made.
    Safe to call more than once, from atexit or a signal handler."""
    with _LABS_LOCK:
        labs = list(_LABS)
    for lab in labs:
        try:
            lab.close(emergency=True)
        except Exception:           # keep going: other labs still need it
            pass


def set_ini(text, section, key, value):
    """Set `key = value` in [section] of INI text, keeping everything else."""
    out, cur, done = [], None, False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            if cur == section and not done:
                out.append(f"{key} = {value}")
                done = True
            cur = s[1:-1].strip()
            out.append(line)
            continue
        if cur == section and not s.startswith(("#", ";")) and "=" in s \
                and s.split("=", 1)[0].strip() == key:
            if not done:
                out.append(f"{key} = {value}")
                done = True
            continue
        out.append(line)
    if not done:
        if cur != section:
            out.append(f"[{section}]")
        out.append(f"{key} = {value}")
    return "\n".join(out) + "\n"


class Lab:
    """One namespace, one daemon, one kernel-side interface."""

    def __init__(self, pmd, workdir, name=None, config=None):
        """`config`: extra settings over the lab defaults, as
        {section: {key: value}} (e.g. {"diag": {"echo_port": 7}})."""
        if pmd not in PMDS:
            raise LabError(f"unknown pmd {pmd!r}")
        self.pmd = pmd
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        _SEQ[0] += 1
        self.ns = f"dpm-{os.getpid()}-{_SEQ[0]}"
        self.name = name or self.ns
        self.config = {sec: dict(kv) for sec, kv in (config or {}).items()}
        self.kernel_if = "dpm0" if pmd == "tap" else "vk"
        self.daemon_if = "dpm0" if pmd == "tap" else "vd"
        self.conf_path = self.workdir / "dpmail.conf"
        self.log_path = self.workdir / "dpmaild.log"
        # dpmailctl's socket: each lab its own (sun_path is 108 bytes)
        sock = self.workdir / "ctl.sock"
        self.ctl_socket = str(sock) if len(str(sock)) < 100 \
            else f"/tmp/{self.ns}.ctl.sock"
        self.proc = None
        self.exit_code = None
        self.final_counters = None
        self.stop_problems = []
        self._log_fh = None
        self._mac = None
        self._closed = False
        self._ns_created = False
        # argv words run before the daemon's command line (e.g. `unshare
        # -m` with a bind mount); each must exec the next, so that Lab.pid
        # stays the daemon's
        self.launcher = []
        self.sanitizer = sanitizer_build()
        self.ready_timeout = 90 if self.sanitizer else 30
        self.stop_timeout = 60 if self.sanitizer else 15

    # -- plumbing -------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _nsexec(self, cmd):
        if isinstance(cmd, str):
            cmd = ["sh", "-c", cmd]
        return ["ip", "netns", "exec", self.ns] + list(cmd)

    def run(self, cmd, check=True, timeout=60, **kw):
        """Run `cmd` (list, or str for sh -c) inside the namespace."""
        full = self._nsexec(cmd)
        try:
            res = subprocess.run(full, capture_output=True, text=True,
                                 timeout=timeout, **kw)
        except subprocess.TimeoutExpired as e:
            raise LabError(f"timed out after {timeout}s in {self.ns}: {cmd}\n"
                           f"stdout: {e.stdout}\nstderr: {e.stderr}") from None
        if check and res.returncode != 0:
            raise LabError(f"failed ({res.returncode}) in {self.ns}: {cmd}\n"
                           f"stdout: {res.stdout}\nstderr: {res.stderr}")
        return res

    def popen(self, cmd, **kw):
        return subprocess.Popen(self._nsexec(cmd), **kw)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    # -- set-up ---------------------------------------------------------

    def devargs(self):
        if self.pmd == "tap":
            return f"net_tap0,iface={self.daemon_if}"
        return f"net_af_packet0,iface={self.daemon_if}"

    def write_config(self):
        text = DEFAULT_CONF.read_text()
        for sec, key, val in (
                ("eal", "lcores", "0-1"),
                ("eal", "hugepages", "no"),
                ("eal", "memory_mb", "256"),
                ("eal", "file_prefix", self.ns),
                ("port", "devargs", self.devargs()),
                ("net", "address", f"{DAEMON_IP}/{PREFIX_LEN}"),
                ("dataplane", "workers", "1"),
                # each lab its own spool; users from the repo's file
                ("spool", "dir", str(self.workdir / "spool")),
                ("policy", "users_file", str(REPO / "etc" / "users")),
                # and its own mailboxes; aliases from the repo's file
                ("mailbox", "dir", str(self.workdir / "mail")),
                ("mta", "aliases_file", str(REPO / "etc" / "aliases")),
                ("control", "socket", self.ctl_socket)):
            text = set_ini(text, sec, key, val)
        for sec, kv in self.config.items():
            for key, val in kv.items():
                if isinstance(val, bool):
                    val = "yes" if val else "no"
                text = set_ini(text, sec, key, val)
        self.conf_path.write_text(text)

    def daemon_env(self):
        env = dict(os.environ)
        if self.sanitizer:
            asan = "abort_on_error=0:halt_on_error=1:detect_leaks=1"
            if LSAN_SUPP.exists():
                env["LSAN_OPTIONS"] = f"suppressions={LSAN_SUPP}"
            env["ASAN_OPTIONS"] = asan
            env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        return env

    def _create_ns(self):
        sh(["ip", "netns", "add", self.ns])
        self._ns_created = True
        self.run(["ip", "link", "set", "lo", "up"])
        for key in ("all", "default"):
            self.run(["sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"])

    def _kernel_addr_up(self):
        ifc = self.kernel_if
        self.run(["sysctl", "-qw", f"net.ipv6.conf.{ifc}.disable_ipv6=1"],
                 check=False)
        self.run(["ip", "addr", "add", f"{KERNEL_IP}/{PREFIX_LEN}", "dev", ifc])
        self.run(["ip", "link", "set", ifc, "up"])

    def _setup_veth(self):
        self.run(["ip", "link", "add", "vk", "type", "veth", "peer", "name", "vd"])
        for ifc in ("vk", "vd"):
            self.run(["sysctl", "-qw", f"net.ipv6.conf.{ifc}.disable_ipv6=1"],
                     check=False)
        self.run(["ethtool", "-K", "vk", "tx", "off"])
        self.run(["ip", "link", "set", "vd", "up"])
        self._kernel_addr_up()

    def start(self):
        binary = daemon_binary()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise LabError(f"dpmaild binary not found or not executable: "
                           f"{binary} (build it, or set DPMAILD)")
        with _LABS_LOCK:
            _LABS.append(self)
        self._create_ns()
        if self.pmd == "af_packet":
            self._setup_veth()
        self.write_config()
        self._log_fh = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.launcher + self._nsexec([str(binary), "-c",
                                          str(self.conf_path)]),
            stdin=subprocess.DEVNULL, stdout=self._log_fh,
            stderr=subprocess.STDOUT, env=self.daemon_env(),
            start_new_session=True)   # Ctrl-C reaches pytest, not the daemon
        self._wait_ready()
        if self.pmd == "tap":
            self._wait_link(self.kernel_if)
            self._kernel_addr_up()
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if READY_RE.search(self.log_text()):
                return
            if self.proc.poll() is not None:
                raise LabError(
                    f"dpmaild exited with {self.proc.returncode} before ready "
                    f"({self.pmd}, {self.ns}); log tail:\n{self.log_tail()}")
            time.sleep(0.05)
        raise LabError(f"dpmaild not ready after {self.ready_timeout}s "
                       f"({self.pmd}); log tail:\n{self.log_tail()}")

    def _wait_link(self, ifc, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run(["ip", "link", "show", ifc], check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise LabError(f"interface {ifc} did not appear in {self.ns}; "
                       f"log tail:\n{self.log_tail()}")

    # -- observation ----------------------------------------------------

    def link_mac(self, ifc):
        res = self.run(["cat", f"/sys/class/net/{ifc}/address"])
        return res.stdout.strip().lower()

    @property
    def kernel_mac(self):
        return self.link_mac(self.kernel_if)

    @property
    def daemon_mac(self):
        """The daemon port's MAC: from its log (`mac=...`), else from the
        neighbour table after a ping."""
        if self._mac:
            return self._mac
        m = MAC_RE.search(self.log_text())
        if m:
            self._mac = m.group(1).lower()
            return self._mac
        self.run(["ping", "-c", "1", "-W", "2", DAEMON_IP], check=False,
                 timeout=10)
        res = self.run(["ip", "neigh", "show", DAEMON_IP, "dev", self.kernel_if],
                       check=False)
        m = re.search(r"lladdr ([0-9a-f:]{17})", res.stdout)
        if not m:
            raise LabError(f"cannot learn the daemon MAC (no mac= in log, no "
                           f"neighbour entry: {res.stdout!r})")
        self._mac = m.group(1)
        return self._mac

    def counters(self, timeout=10):
        """SIGUSR1 the daemon and return the counter table it prints."""
        if not self.alive():
            raise LabError(f"dpmaild is not running (exit {self.proc.poll()}); "
                           f"log tail:\n{self.log_tail()}")
        start = self.log_path.stat().st_size
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        last_n, stable_since = -1, None
        table = None
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as fh:
                fh.seek(start)
                new = fh.read().decode(errors="replace")
            table = parse_counter_table(new)
            if table is not None:
                if all(k in table for k in EXPECTED_COUNTERS):
                    # read once more so a table still being written is whole
                    time.sleep(0.02)
                    with open(self.log_path, "rb") as fh:
                        fh.seek(start)
                        return parse_counter_table(
                            fh.read().decode(errors="replace"))
                n = len(table)
                if n != last_n:
                    last_n, stable_since = n, time.monotonic()
                elif n and time.monotonic() - stable_since > 0.3:
                    return table      # some promised counter is missing
            if not self.alive():
                raise LabError(f"dpmaild died after SIGUSR1 (exit "
                               f"{self.proc.returncode}); log tail:\n"
                               f"{self.log_tail()}")
            time.sleep(0.02)
        raise LabError(f"no counter table within {timeout}s of SIGUSR1; "
                       f"log tail:\n{self.log_tail()}")

    def cpu_seconds(self):
        """utime+stime of the daemon, all threads, in seconds."""
        fields = Path(f"/proc/{self.pid}/stat").read_text()
        rest = fields[fields.rindex(")") + 2:].split()
        utime, stime = int(rest[11]), int(rest[12])     # fields 14, 15
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def ping(self, count, interval=None, flood=False, size=None, timeout=None,
             wait=1, target=DAEMON_IP):
        cmd = ["ping", "-c", str(count), "-q", "-W", str(wait)]
        if flood:
            cmd.append("-f")
        elif interval is not None:
            cmd += ["-i", str(interval)]
        if size is not None:
            cmd += ["-s", str(size)]
        cmd.append(target)
        if timeout is None:
            per = 0.01 if flood else (interval or 1.0)
            timeout = 30 + count * per * 3
        res = self.run(cmd, check=False, timeout=timeout)
        out = res.stdout + res.stderr
        stats = parse_ping(out)
        stats["cmd"] = " ".join(cmd)
        stats["rc"] = res.returncode
        return stats

    def arping(self, count, timeout=30):
        if arping_flavour() == "habets":
            cmd = ["arping", "-c", str(count), "-W", "0.2", "-i",
                   self.kernel_if, DAEMON_IP]
        else:
            cmd = ["arping", "-c", str(count), "-w", "5", "-I",
                   self.kernel_if, DAEMON_IP]
        res = self.run(cmd, check=False, timeout=timeout)
        out = res.stdout + res.stderr
        return parse_arping(out), out

    # -- shutdown -------------------------------------------------------

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Signal the daemon and wait. Returns its exit code; on a hang it is
        killed with SIGKILL and the hang is recorded as a problem."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            timeout = timeout or self.stop_timeout
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop_problems.append(
                    f"dpmaild did not exit within {timeout}s of "
                    f"{signal.Signals(sig).name}; killed with SIGKILL")
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.exit_code is None:
            self.exit_code = self.proc.returncode
            self.final_counters = parse_counter_table(self.log_text())
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None
        return self.exit_code

    def sanitizer_reports(self):
        return [l for l in self.log_text().splitlines() if SANITIZER_RE.search(l)]

    def close(self, emergency=False):
        """Stop the daemon, delete the namespace. Returns the problems seen
        (empty when all was clean)."""
        if self._closed:
            return []
        self._closed = True
        problems = []
        try:
            if self.proc is not None:
                rc = self.stop(timeout=5 if emergency else None)
                problems += self.stop_problems
                if rc != 0:
                    problems.append(f"dpmaild exit code {rc} (expected 0)")
                if self.final_counters is None and rc == 0:
                    problems.append("no counter table printed at shutdown")
                if self.sanitizer:
                    problems += [f"sanitizer: {l}" for l in self.sanitizer_reports()]
        finally:
            if self._ns_created:
                _delete_ns(self.ns)
            with _LABS_LOCK:
                if self in _LABS:
                    _LABS.remove(self)
        return problems


def save_log(lb, name):
    """Copy the daemon's log to $DPMAIL_RESULTS/logs/NAME.log (CI keeps it)."""
    d = os.environ.get("DPMAIL_RESULTS")
    if d and lb.log_path.exists():
        dst = os.path.join(d, "logs")
        os.makedirs(dst, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_.[]" else "_" for c in name)
        shutil.copy(lb.log_path, os.path.join(dst, safe + ".log"))


def close_labs(request, labs, tail=80):
    """A fixture's teardown: close each lab (worlds first: anything with a
    .lab is closed, then its lab), keep its log, print the log's tail when
    the test failed or the teardown found a problem; any problem (a leak,
    a sanitizer report, a bad exit status) fails the test."""
    import pytest
    failed = any(getattr(request.node, "rep_" + w, None) is not None
                 and getattr(request.node, "rep_" + w).failed
                 for w in ("setup", "call"))
    problems = []
    for x in labs:
        lb = getattr(x, "lab", x)
        if lb is not x:
            x.close()
        mine = lb.close()
        problems += mine
        save_log(lb, request.node.name)
        if mine or failed:
            print(f"\n--- dpmaild log tail ({lb.pmd}, {lb.ns}, "
                  f"{lb.log_path}) ---\n{lb.log_tail(tail)}")
    if problems:
        pytest.fail("teardown: " + "; ".join(problems), pytrace=False)
