"""Lab helpers for the SMTP tests: talking to the daemon from the test
process (sockets in the lab namespace, see smtpclient.py), reading its
spool, checking stored messages byte for byte, killing and restarting the
daemon on the same spool, and a small tmpfs for disk-full tests.

Owns: nothing beyond what it is handed (a started Lab), and the tmpfs
mounts it makes (under a test's own tmp_path, unmounted by `Tmpfs.close`).

Must never: touch the lab's namespace set-up (lab.py does that), mount
anywhere outside a test's tmp_path, or connect outside 198.18.0.0/15.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import lab as labmod
import smtpclient as sc
from lab import DAEMON_IP, LabError

QUEUED_LOG_RE = re.compile(
    r"smtpd: ([0-9A-Z]{14}): client=[^,]*, from=<([^>]*)>, nrcpt=(\d+), "
    r"size=(\d+): queued")


def wait_reachable(lab, timeout=15):
    """Until the daemon answers a ping (its ARP reply included): right
    after start the kernel's first ARP requests sometimes go unanswered
    for seconds, and a connect then fails with EHOSTUNREACH."""
    deadline = time.monotonic() + timeout
    while True:
        res = lab.run(["ping", "-c", "1", "-W", "1", DAEMON_IP], check=False,
                      timeout=10)
        if res.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise LabError(f"198.18.0.2 does not answer ping after "
                           f"{timeout}s; log tail:\n{lab.log_tail()}")


def conn(lab, port=25, timeout=10.0, greet=True):
    """A blocking SMTP client connected to the daemon (greeting read)."""
    return sc.Conn(lab.ns, DAEMON_IP, port, timeout=timeout, greet=greet)


def smtplib_client(lab, port=25, timeout=60.0):
    return sc.NsSMTP(lab.ns, DAEMON_IP, port, timeout=timeout)


def spool_dir(lab):
    return Path(lab.workdir) / "spool"


def spool(lab, body=True):
    """({qid: message}, [duplicate qids], the whole dump) of the lab's
    spool (dpmailctl reads it offline-safe, the daemon may be running)."""
    return sc.spool_messages(spool_dir(lab), body=body)


def stored_data(rec):
    """The client's data as stored: the body minus our Received:."""
    return sc.strip_received(rec["body_bytes"])


def rcpt_addrs(rec):
    """Recipient addresses of a dumped message."""
    return [r["addr"] for r in rec["recipients"]]


def rcpt_objs(rec):
    return rec["recipients"]


def assert_stored(lab, qid, data, mail_from=None, rcpts=None, msgs=None):
    """The message `qid` is in the spool and its data is `data` exactly.
    Returns its record."""
    if msgs is None:
        msgs, dups, _ = spool(lab)
        assert not dups, f"queue IDs stored twice: {dups}"
    assert qid in msgs, (f"queue ID {qid} acknowledged but not in the spool "
                         f"({len(msgs)} messages there)")
    rec = msgs[qid]
    got = stored_data(rec)
    if got != data:
        i = next((k for k in range(min(len(got), len(data)))
                  if got[k] != data[k]), min(len(got), len(data)))
        raise AssertionError(
            f"{qid}: stored data differs from what was sent at byte {i} "
            f"(stored {len(got)} bytes, sent {len(data)}): stored "
            f"{got[max(0, i - 40):i + 40]!r} sent {data[max(0, i - 40):i + 40]!r}")
    if mail_from is not None:
        assert rec.get("mail_from") == mail_from, rec.get("mail_from")
    if rcpts is not None:
        assert rcpt_addrs(rec) == list(rcpts), rcpt_addrs(rec)
    return rec


def queued_log_lines(lab):
    """[(qid, from, nrcpt, size)] from the daemon's `queued` log lines."""
    return [(m.group(1), m.group(2), int(m.group(3)), int(m.group(4)))
            for m in QUEUED_LOG_RE.finditer(lab.log_text())]


def wait_for(pred, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ---------------------------------------------------------------- crash

def kill9(lab):
    """SIGKILL the daemon and reap it (no counters, no clean exit)."""
    os.kill(lab.pid, signal.SIGKILL)
    lab.proc.wait(timeout=30)
    if lab._log_fh:
        lab._log_fh.close()
        lab._log_fh = None


def _launch(lab):
    if lab.alive():
        raise LabError("restart: the daemon is still running")
    lab._log_fh = open(lab.log_path, "ab")
    lab.proc = subprocess.Popen(
        lab._nsexec([str(labmod.daemon_binary()), "-c", str(lab.conf_path)]),
        stdin=subprocess.DEVNULL, stdout=lab._log_fh,
        stderr=subprocess.STDOUT, env=lab.daemon_env(),
        start_new_session=True)
    lab.exit_code = None
    lab.final_counters = None


def start_and_kill9(lab, delay):
    """Start the daemon on the same spool and SIGKILL it `delay` seconds
    later, whatever it is doing (recovery, start-up, serving)."""
    _launch(lab)
    time.sleep(delay)
    kill9(lab)


def restart(lab):
    """Start the daemon again in the same namespace with the same config
    (same spool dir) after kill9; its log is appended to the same file.
    Returns the log text of this start (up to ready)."""
    start = lab.log_path.stat().st_size
    _launch(lab)
    deadline = time.monotonic() + lab.ready_timeout
    text = ""
    while True:
        with open(lab.log_path, "rb") as fh:
            fh.seek(start)
            text = fh.read().decode(errors="replace")
        if labmod.READY_RE.search(text):
            break
        if lab.proc.poll() is not None:
            raise LabError(f"dpmaild exited with {lab.proc.returncode} "
                           f"during restart; log:\n{text[-3000:]}")
        if time.monotonic() > deadline:
            raise LabError(f"dpmaild not ready after restart; log:\n"
                           f"{text[-3000:]}")
        time.sleep(0.05)
    if lab.pmd == "tap":
        lab._wait_link(lab.kernel_if)
        lab._kernel_addr_up()
    else:
        lab.run(["ip", "neigh", "flush", "dev", lab.kernel_if], check=False)
    return text


# ---------------------------------------------------------------- tmpfs

class Tmpfs:
    """A tmpfs of `size` (mount(8) syntax, "8m") at `path` (created)."""

    def __init__(self, path, size):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        labmod.sh(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755",
                   "dpmail-test", str(self.path)])
        self.mounted = True

    def resize(self, size):
        labmod.sh(["mount", "-o", f"remount,size={size}", str(self.path)])

    def free_bytes(self):
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def close(self):
        if self.mounted:
            for _ in range(50):
                res = labmod.sh(["umount", str(self.path)], check=False)
                if res.returncode == 0:
                    break
                time.sleep(0.1)
            else:
                labmod.sh(["umount", "-l", str(self.path)], check=False)
            self.mounted = False


# ---------------------------------------------------------------- capture

class CaptureSink:
    """A one-thread SMTP sink on 127.0.0.1:`port` inside namespace `ns`
    that keeps the (dot-unstuffed) data of every message: the reference
    for what a client such as smtp-source sends."""

    def __init__(self, ns, port=2525):
        self.port = port
        self.messages = []
        self.sock = sc.ns_socket(ns)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                s, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            try:
                self._session(s)
            except OSError:
                pass
            finally:
                s.close()

    def _session(self, s):
        s.settimeout(10)
        f = s.makefile("rb")
        s.sendall(b"220 capture ESMTP\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                s.sendall(b"250 capture\r\n")
            elif verb == b"DATA":
                s.sendall(b"354 go\r\n")
                data = []
                while True:
                    l = f.readline()
                    if not l or l == b".\r\n":
                        break
                    data.append(l[1:] if l.startswith(b".") else l)
                self.messages.append(b"".join(data))
                s.sendall(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                s.sendall(b"221 bye\r\n")
                return
            else:
                s.sendall(b"250 ok\r\n")

    def close(self):
        self._stop.set()
        self.t.join(5)
        self.sock.close()
