"""The accept benchmark's kernel-side servers, each in its own network
namespace (named dpm-<pid>-<n> like the lab's, loopback only), reached
over that namespace's kernel loopback at 127.0.0.1:

  SinkServer     Postfix's smtp-sink: accepts everything, stores nothing
                 (the ceiling of what the kernel stack and client allow)
  PostfixServer  the lab's private Postfix (tests/integration/mtalab.py,
                 Postfix: its own config_directory, queue_directory and
                 data_directory, `postfix -c DIR start|stop`) as a plain
                 accepting relay: smtpd on 127.0.0.1:PORT; relay_domains
                 = dpmail.test and every transport is discard:, so a
                 message is fsync'ed into the queue before the 250
                 (Postfix's default) and then thrown away by the queue
                 manager.

Owns: those namespaces, the processes in them (mtalab.Postfix owns its
directories).
Must never: touch the system Postfix (/etc/postfix, /var/spool/postfix)
or listen anywhere but 127.0.0.1 inside its own namespace.
"""

import subprocess
import time
from pathlib import Path

import benchlib as bl
import mtalab as ml  # tests/integration, via benchlib

LOOPBACK = "127.0.0.1"

# tests/integration/mtalab.Postfix made a plain accepting relay on
# 127.0.0.1: nothing local or virtual, relayed mail thrown away by the
# queue manager (discard:), the size limit dpmail has by default
POSTFIX_MAIN = {
    "mydomain": "postfix.test",
    "mynetworks": "127.0.0.0/8",
    "relay_domains": "dpmail.test",
    "default_transport": "discard:",
    "relay_transport": "discard:",
    "local_transport": "discard:",
    "message_size_limit": 36700160,
}


class LoopbackNS:
    """A namespace with only `lo` up."""

    def __init__(self):
        self.ns = bl._next_ns()
        bl.labmod.sh(["ip", "netns", "add", self.ns])
        bl._PAIRS.append(self)        # removed by benchlib.cleanup_all
        self.run(["ip", "link", "set", "lo", "up"])
        bl.ns_tuning(self.run)

    def run(self, cmd, check=True, timeout=60):
        return bl.labmod.sh(["ip", "netns", "exec", self.ns] + list(cmd),
                            check=check, timeout=timeout)

    def wait_port(self, port, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = self.run(["ss", "-Hltn", f"sport = :{port}"], check=False)
            if res.stdout.strip():
                return
            time.sleep(0.1)
        raise bl.labmod.LabError(f"nothing listens on {port} in {self.ns}")

    def close(self):
        if self.ns:
            bl.labmod._delete_ns(self.ns)
            self.ns = None
        if self in bl._PAIRS:
            bl._PAIRS.remove(self)


class SinkServer(LoopbackNS):
    name = "smtp-sink"

    def __init__(self, port=2525):
        super().__init__()
        self.port = port
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "smtp-sink", "-u", "nobody",
             f"{LOOPBACK}:{port}", "1024"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True)
        self.wait_port(port)

    def drain(self):
        pass

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        super().close()


class PostfixServer(LoopbackNS):
    """mtalab.Postfix (its own directories, no chroot, log copied to
    WORKDIR/postfix/postfix.log at close) with POSTFIX_MAIN, smtpd on
    127.0.0.1:PORT in a loopback namespace of its own. Subclasses may
    add to self.etc's main.cf and master.cf in _postfix("start")
    (bench/tls)."""

    name = "postfix"

    def __init__(self, workdir, port=2526):
        super().__init__()
        self.port = port
        self.pf = ml.Postfix(ml.NsRunner(self.ns), Path(workdir) / "postfix",
                             LOOPBACK, port=port, domains=(),
                             hostname="bench.postfix.test",
                             main=POSTFIX_MAIN)
        self.dir, self.etc = self.pf.dir, self.pf.etc
        try:
            self._postfix("start")
        except Exception:
            self.close()
            raise

    def _postfix(self, verb):
        if verb == "start":
            self.pf.start()
        else:
            self.pf.stop()

    def log_tail(self, n=20):
        return self.pf.log_tail(n)

    def queued(self):
        return self.pf.queued()

    def drain(self, timeout=60):
        """Waits until the queue manager has discarded everything, so one
        run's deliveries do not eat into the next run."""
        self.pf.wait_drained(timeout)

    def close(self):
        try:
            self.pf.close()
        except Exception:
            pass
        super().close()            # kills whatever is left in the namespace
