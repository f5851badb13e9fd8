"""The accept benchmark's kernel-side servers, each in its own network
namespace (named dpm-<pid>-<n> like the lab's, loopback only), reached
over that namespace's kernel loopback at 127.0.0.1:

  SinkServer     Postfix's smtp-sink: accepts everything, stores nothing
                 (the ceiling of what the kernel stack and client allow)
  PostfixServer  a private Postfix instance as a plain accepting relay:
                 its own config_directory, queue_directory and
                 data_directory under the benchmark's temp dir; smtpd on
                 127.0.0.1:PORT; relay_domains = dpmail.test and every
                 transport is discard:, so a message is fsync'ed into the
                 queue before the 250 (Postfix's default) and then thrown
                 away by the queue manager. started with `postfix -c DIR
                 start`, stopped with `postfix -c DIR stop`.

Owns: those namespaces, the processes in them, the Postfix directories.
Must never: touch the system Postfix (/etc/postfix, /var/spool/postfix)
or listen anywhere but 127.0.0.1 inside its own namespace.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import benchlib as bl

LOOPBACK = "127.0.0.1"

POSTFIX_MAIN = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.postfix.test
mydomain = postfix.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = dpmail.test
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
default_transport = discard:
relay_transport = discard:
local_transport = discard:
alias_maps =
alias_database =
biff = no
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 200
message_size_limit = 36700160
maillog_file_prefixes = {dir}
maillog_file = {dir}/postfix.log
"""

# Only the services an accepting relay with discard delivery needs; no
# chroot (the queue dir is not set up as one).
POSTFIX_MASTER = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


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
    name = "postfix"

    def __init__(self, workdir, port=2526):
        super().__init__()
        self.port = port
        self.dir = Path(workdir) / "postfix"
        self.etc = self.dir / "etc"
        for d in (self.etc, self.dir / "queue", self.dir / "data"):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.dir / "data", "postfix", "postfix")
        (self.etc / "main.cf").write_text(POSTFIX_MAIN.format(dir=self.dir))
        (self.etc / "master.cf").write_text(POSTFIX_MASTER.format(port=port))
        self.started = False
        self._postfix("start")
        self.started = True
        self.wait_port(port)

    def _postfix(self, verb):
        # postfix(1) reports to stderr only on a terminal; its log file
        # has the rest
        res = self.run(["postfix", "-c", str(self.etc), verb], check=False,
                       timeout=60)
        if res.returncode != 0:
            raise bl.labmod.LabError(
                f"postfix {verb} failed ({res.returncode}): {res.stderr}\n"
                f"{self.log_tail()}")

    def log_tail(self, n=20):
        try:
            lines = (self.dir / "postfix.log").read_text(
                errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def queued(self):
        n = 0
        for sub in ("incoming", "active", "deferred", "maildrop", "hold"):
            for _, _, files in os.walk(self.dir / "queue" / sub):
                n += len(files)
        return n

    def drain(self, timeout=60):
        """Waits until the queue manager has discarded everything, so one
        run's deliveries do not eat into the next run."""
        deadline = time.monotonic() + timeout
        while self.queued() and time.monotonic() < deadline:
            time.sleep(0.2)

    def close(self):
        if self.started:
            try:
                self._postfix("stop")
            except Exception:
                pass
            self.started = False
        super().close()            # kills whatever is left in the namespace
