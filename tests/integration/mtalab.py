"""Lab helpers for the MTA tests (relay and local delivery) and the relay
benchmark: the world around dpmaild's outbound side, all inside the lab
namespace on the kernel end of the link.

  mta_config      the daemon's [mta]/[mailbox]/[policy] settings for a
                  test, and the users, transport and aliases files: the one
                  place that knows those key names
  add_addresses   extra kernel-side addresses (198.18.0.10, .11 ...) so
                  each downstream listens on its own IP, reached by ARP
  Dns             dnsmasq on 198.18.0.1:53 serving MX and A records of
                  test domains, a null MX (RFC 7505) and NXDOMAIN names;
                  `dns_query` asks it (a small stub resolver, UDP)
  SmtpSink        Postfix's smtp-sink on one address (counting, or dumping
                  each message to a file; not byte-exact: its dump turns
                  CRLF into LF)
  minisink.py     our asyncio sink, byte-exact, per-recipient replies,
                  down/up (re-exported here as MiniSink)
  Postfix         a private Postfix instance (own config, queue and data
                  directories in a /tmp dir of its own, no chroot) as a
                  downstream MTA delivering
                  into Maildirs, or as a relay to a sink (the benchmark)
  maildir_*       reading Maildirs (files in new/ and cur/); wait_files
  parse_dsn       a bounce checked as an RFC 3464 multipart/report
  deliveries      the daemon's per-attempt log lines (Postfix style)
  send_one / send_many   clients that record each message's queue ID;
                  send: one message that must be taken

Owns: what it starts (dnsmasq, sinks, Postfix in the lab namespace) and
the files under the directory it is given; `MtaWorld.close` stops them.
Must never: listen or connect outside 198.18.0.0/15 (and the namespace's
own loopback), touch the system Postfix (/etc/postfix,
/var/spool/postfix), or write outside the test's directory (save a
Postfix instance's own /tmp/dpmail-postfix-* dir, removed by close()).
"""

import asyncio
import email
import email.policy
import os
import pwd
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import smtpclient as sc
from lab import DAEMON_IP, KERNEL_IP, LabError, PREFIX_LEN
from minisink import MiniSink  # noqa: F401  (re-exported)

LOCAL_DOMAIN = "dpmail.test"
SINK_IPS = ["198.18.0.10", "198.18.0.11", "198.18.0.12", "198.18.0.13",
            "198.18.0.14", "198.18.0.15"]
# in the subnet, never assigned: ARP for it goes unanswered
NO_ARP_IP = "198.18.0.99"

# ---------------------------------------------------------------- config

# The daemon's MTA settings for tests: fast retries, short timeouts. Every
# key name of [mta] and [mailbox] lives here and in mta_config only.
MTA_TEST_DEFAULTS = {
    "resolvers": KERNEL_IP,
    "relayhost": "",
    "recipient_delimiter": "+",
    "dest_concurrency": 10,
    "dest_msgs_per_conn": 100,
    "dest_rate": 0,
    "retry_first_s": 2,
    "retry_max_s": 4,
    "queue_lifetime_s": 432000,
    "delay_warning_s": 14400,
    "dest_backoff_s": 1,
    "connect_timeout_s": 5,
    "double_bounce_to": "",
}


def mta_config(workdir, users=("alice", "bob", "carol"),
               local_domains=LOCAL_DOMAIN, transport=None, aliases=None,
               trusted_networks="198.18.0.0/24", relay_domains="",
               mailbox=None, extra=None, **mta):
    """{section: {key: value}} for Lab(config=...): [mta] from
    MTA_TEST_DEFAULTS updated with `mta` (a value None drops the key),
    [mailbox] dir = WORKDIR/mail (+ `mailbox`), [policy] with a users
    file written from `users`, and a transport file / aliases file when
    given (lists of lines, or a dict for the transport map). `extra`:
    more sections, merged last."""
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    users_file = wd / "users"
    users_file.write_text("".join(f"{u}\n" for u in users))
    m = dict(MTA_TEST_DEFAULTS)
    m.update(mta)
    if transport is not None:
        tf = wd / "transport"
        if isinstance(transport, dict):
            transport = [f"{k} {v}" for k, v in transport.items()]
        tf.write_text("".join(f"{l}\n" for l in transport))
        m["transport_file"] = str(tf)
    if aliases is not None:
        af = wd / "aliases"
        if isinstance(aliases, dict):
            aliases = [f"{k}: {', '.join(v) if isinstance(v, (list, tuple)) else v}"
                       for k, v in aliases.items()]
        af.write_text("".join(f"{l}\n" for l in aliases))
        m["aliases_file"] = str(af)
    conf = {
        "mta": {k: v for k, v in m.items() if v is not None},
        "mailbox": {"dir": str(wd / "mail"), **(mailbox or {})},
        "policy": {"users_file": str(users_file),
                   "local_domains": local_domains,
                   "trusted_networks": trusted_networks,
                   "relay_domains": relay_domains},
        "tcp": {"msl_ms": 1000},
    }
    for sec, kv in (extra or {}).items():
        conf.setdefault(sec, {}).update(kv)
    return conf


def mailbox_path(mail_dir, user, domain=None):
    """A local user's Maildir: DIR/<user>/ for users listed by name,
    DIR/@<domain>/<user>/ for users listed as user@domain
    (docs/config.md, [mailbox])."""
    if domain:
        return Path(mail_dir) / f"@{domain}" / user
    return Path(mail_dir) / user


# ---------------------------------------------------------------- runner

class NsRunner:
    """Run commands in a namespace: a started Lab, or a bare namespace
    given by name (for checks without the daemon)."""

    def __init__(self, lab_or_ns, kernel_if="dpm0"):
        if isinstance(lab_or_ns, str):
            self.lab = None
            self.ns = lab_or_ns
            self.kernel_if = kernel_if
        else:
            self.lab = lab_or_ns
            self.ns = lab_or_ns.ns
            self.kernel_if = lab_or_ns.kernel_if

    def argv(self, cmd):
        if isinstance(cmd, str):
            cmd = ["sh", "-c", cmd]
        return ["ip", "netns", "exec", self.ns] + list(cmd)

    def run(self, cmd, check=True, timeout=60, **kw):
        try:
            res = subprocess.run(self.argv(cmd), capture_output=True,
                                 text=True, timeout=timeout, **kw)
        except subprocess.TimeoutExpired as e:
            raise LabError(f"timed out after {timeout}s in {self.ns}: "
                           f"{cmd}\nstdout: {e.stdout}\nstderr: {e.stderr}") \
                from None
        if check and res.returncode != 0:
            raise LabError(f"failed ({res.returncode}) in {self.ns}: {cmd}\n"
                           f"stdout: {res.stdout}\nstderr: {res.stderr}")
        return res

    def popen(self, cmd, **kw):
        kw.setdefault("start_new_session", True)
        return subprocess.Popen(self.argv(cmd), **kw)

    def wait_listen(self, ip, port, proto="t", timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = self.run(["ss", f"-Hl{proto}n", f"src {ip}:{port}"],
                           check=False)
            if res.stdout.strip():
                return
            time.sleep(0.05)
        raise LabError(f"nothing listens on {ip}:{port} ({proto}) in "
                       f"{self.ns}")


def _stop_proc(p, sig=signal.SIGTERM, timeout=5):
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=5)


def add_addresses(runner, ips, dev=None):
    """Extra /24 addresses on the kernel end (idempotent: an address
    already there is fine). A tap is recreated by a daemon restart, so
    call again after smtplab.restart."""
    dev = dev or runner.kernel_if
    for ip in ips:
        res = runner.run(["ip", "addr", "add", f"{ip}/{PREFIX_LEN}", "dev",
                          dev], check=False)
        if res.returncode != 0 and "File exists" not in res.stderr:
            raise LabError(f"ip addr add {ip} dev {dev}: {res.stderr}")


# ---------------------------------------------------------------- DNS

class Dns:
    """dnsmasq on KERNEL_IP:53 inside the namespace, authoritative-ish for
    the zone given (nothing forwarded: --no-resolv, no servers):

      mx      {domain: [(pref, host), ...]}
      a       {host: ip}
      null_mx [domain, ...]     "MX 0 ." (RFC 7505): dnsmasq's --mx-host
                                cannot name the root, so a raw record
                                (--dns-rr, type 15, RDATA 0000 00)
      nxdomain [domain, ...]    NXDOMAIN for the name and below

    Every other name under the zone's top-level domains (.test) gets
    NXDOMAIN too (--local), never REFUSED."""

    def __init__(self, runner, workdir, mx=None, a=None, null_mx=(),
                 nxdomain=(), listen=KERNEL_IP, tlds=("test",)):
        self.r = runner
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.listen = listen
        self.mx = dict(mx or {})
        self.a = dict(a or {})
        self.null_mx = list(null_mx)
        self.nxdomain = list(nxdomain)
        self.tlds = list(tlds)
        self.conf = self.dir / "dnsmasq.conf"
        self.log = self.dir / "dnsmasq.log"
        self.proc = None

    def config_text(self):
        lines = ["no-resolv", "no-hosts", "no-poll", "port=53",
                 f"listen-address={self.listen}", "bind-interfaces",
                 "except-interface=lo", "log-queries",
                 f"log-facility={self.log}", "pid-file=", "user=root",
                 "cache-size=0"]
        for t in self.tlds:
            lines.append(f"local=/{t}/")
        for d in self.nxdomain:
            lines.append(f"address=/{d}/")
        for d, mxs in self.mx.items():
            for pref, host in mxs:
                lines.append(f"mx-host={d},{host},{pref}")
        for host, ip in self.a.items():
            lines.append(f"host-record={host},{ip}")
        for d in self.null_mx:
            lines.append(f"dns-rr={d},15,000000")
        return "\n".join(lines) + "\n"

    def start(self):
        self.conf.write_text(self.config_text())
        self.proc = self.r.popen(["dnsmasq", "--keep-in-foreground",
                                  f"--conf-file={self.conf}"],
                                 stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
        try:
            self.r.wait_listen(self.listen, 53, proto="u", timeout=10)
        except LabError:
            out = ""
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
            raise LabError(f"dnsmasq did not start: {out}\n"
                           f"{self.log_text()[-2000:]}") from None
        return self

    def restart(self):
        self.stop()
        return self.start()

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        _stop_proc(self.proc)
        self.proc = None

    close = stop


QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16,
          "AAAA": 28}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN",
          4: "NOTIMP", 5: "REFUSED"}


def _dns_name(msg, off):
    """(name, offset after it) with compression pointers."""
    labels, jumped, end = [], False, None
    for _ in range(128):
        n = msg[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            if not jumped:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            jumped = True
            continue
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    return ".".join(labels), (end if jumped else off)


def dns_query(ns, name, qtype="MX", server=KERNEL_IP, port=53, timeout=3.0):
    """One UDP query from inside namespace `ns`. Returns {"rcode": str,
    "aa": bool, "answers": [(type, value)]} with value an IP for A and
    (pref, exchange) for MX ("" is the root: a null MX)."""
    qid = random.randrange(65536)
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack("!HH", QTYPES[qtype], 1)
    s = sc.ns_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(q, (server, port))
        while True:
            msg, _ = s.recvfrom(4096)
            if msg[:2] == q[:2]:
                break
    finally:
        s.close()
    _, flags, qd, an, _, _ = struct.unpack("!HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = _dns_name(msg, off)
        off += 4
    answers = []
    for _ in range(an):
        rname, off = _dns_name(msg, off)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        if rtype == 1:
            answers.append(("A", socket.inet_ntoa(rdata)))
        elif rtype == 15:
            pref = struct.unpack("!H", rdata[:2])[0]
            exch, _ = _dns_name(msg, off + 2)
            answers.append(("MX", (pref, exch)))
        else:
            answers.append((rtype, rdata))
        off += rdlen
    return {"rcode": RCODES.get(flags & 0xF, str(flags & 0xF)),
            "aa": bool(flags & 0x0400), "answers": answers}


# ---------------------------------------------------------------- smtp-sink

class SmtpSink:
    """Postfix's smtp-sink on ip:port in the namespace, as `nobody`.
    `dump_dir`: one file per message (-d; LF line ends, X-Client-* headers
    on top: not byte-exact). `count()`: messages taken so far, from its
    running counters (-c, "mesg=N" on stdout, read by a thread). Do not
    use -M (exit after N messages) to time a run: it exits before the
    last 250 goes out, and the client sees a lost connection."""

    MESG_RE = re.compile(rb"mesg=(\d+)")

    def __init__(self, runner, ip, port=25, dump_dir=None, backlog=1024,
                 extra=()):
        self.r, self.ip, self.port = runner, ip, port
        self.dump_dir = Path(dump_dir) if dump_dir else None
        cmd = ["smtp-sink", "-u", "nobody", "-c", "-h", f"sink-{ip}"]
        if self.dump_dir:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
            shutil.chown(self.dump_dir, "nobody")
            cmd += ["-d", f"{self.dump_dir}/"]
        cmd += list(extra) + [f"{ip}:{port}", str(backlog)]
        self.proc = runner.popen(cmd, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        self._count = 0
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        runner.wait_listen(ip, port)

    def _read(self):
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                return
            buf = (buf + chunk)[-256:]
            ms = self.MESG_RE.findall(buf)
            if ms:
                self._count = max(self._count, int(ms[-1]))

    def count(self):
        return self._count

    def wait_count(self, n, timeout):
        deadline = time.monotonic() + timeout
        while self._count < n:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"smtp-sink {self.ip}:{self.port}: "
                                     f"{self._count} messages, expected {n}")
            time.sleep(0.02)
        return self._count

    def dumped(self):
        """Files it wrote, oldest first (each one message)."""
        if not self.dump_dir:
            return []
        return sorted((p for p in self.dump_dir.rglob("*") if p.is_file()),
                      key=lambda p: p.stat().st_mtime_ns)

    def close(self):
        _stop_proc(self.proc)


# ---------------------------------------------------------------- Postfix

POSTFIX_MAIN = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {hostname}
mydomain = {hostname}
myorigin = $myhostname
mydestination =
inet_interfaces = {ip}
inet_protocols = ipv4
mynetworks = 198.18.0.0/15 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtp_host_lookup = native
disable_dns_lookups = yes
smtp_dns_support_level = disabled
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:no local delivery here
biff = no
default_process_limit = 200
message_size_limit = 209715200
mailbox_size_limit = 0
virtual_mailbox_limit = 0
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {dir}/mail
virtual_mailbox_maps = texthash:{dir}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maillog_file_prefixes = {dir}
maillog_file = {dir}/postfix.log
"""

POSTFIX_MASTER = """\
{ip}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
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
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _main_cf_set(text, key, value):
    """main.cf text with `key = value` in place of the key's line, or
    added at the end (one line a key: no "overriding earlier entry")."""
    line = f"{key} = {value}"
    pat = re.compile(rf"^{re.escape(key)}\s*=.*$", re.M)
    if pat.search(text):
        return pat.sub(lambda m: line, text, count=1)
    return text + line + "\n"


class Postfix:
    """A private Postfix (config_directory DIR/etc, queue DIR/queue, data
    DIR/data, log DIR/postfix.log), smtpd on ip:port, no chroot, started
    with `postfix -c DIR/etc start` inside the namespace.

    Delivery: `domains` are virtual mailbox domains; each of `users`
    ("u@domain") gets a Maildir DIR/mail/<domain>/<u>/ (owned by
    nobody). `relayhost` ("[ip]:port") sends everything else there
    (mynetworks may relay). `main` {key: value} replaces main.cf lines
    or adds them (bench/accept/baselines.py makes it a discarding relay
    on 127.0.0.1 this way).
    Postfix fsyncs each queue file before its 250 (default)."""

    def __init__(self, runner, workdir, ip, port=25, domains=("pf.test",),
                 users=(), relayhost=None, hostname="downstream.pf.test",
                 main=None):
        self.r = runner
        self.ip, self.port = ip, port
        # Postfix's daemons (user postfix) and virtual(8) (nobody) must
        # reach the instance, and pytest keeps its tmp tree 0700 (and
        # resets it at every session start, so no chmod of it lasts):
        # the instance lives in a 0755 dir of its own under /tmp, linked
        # from `workdir` as instance/ while it runs; close() copies the
        # log back to workdir/postfix.log and removes both.
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="dpmail-postfix-",
                                         dir="/tmp"))
        os.chmod(self.dir, 0o755)
        link = self.workdir / "instance"
        if not link.exists() and not link.is_symlink():
            link.symlink_to(self.dir)
        self.etc = self.dir / "etc"
        self.mail = self.dir / "mail"
        for d in (self.etc, self.dir / "queue", self.dir / "data", self.mail):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.dir / "data", "postfix", "postfix")
        pw = pwd.getpwnam("nobody")
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        shutil.chown(self.mail, "nobody", pw.pw_gid)
        self.users = list(users)
        (self.etc / "vmailbox").write_text(
            "".join(f"{u} {u.split('@')[1]}/{u.split('@')[0]}/\n"
                    for u in self.users))
        text = POSTFIX_MAIN.format(dir=self.dir, ip=ip, hostname=hostname,
                                   domains=", ".join(domains) or "",
                                   uid=self.uid, gid=self.gid)
        if relayhost:
            text += f"relayhost = {relayhost}\n"
        for k, v in (main or {}).items():
            text = _main_cf_set(text, k, v)
        (self.etc / "main.cf").write_text(text)
        (self.etc / "master.cf").write_text(
            POSTFIX_MASTER.format(ip=ip, port=port))
        self.started = False

    def start(self):
        res = self.r.run(["postfix", "-c", str(self.etc), "start"],
                         check=False, timeout=60)
        if res.returncode != 0:
            raise LabError(f"postfix start failed ({res.returncode}): "
                           f"{res.stderr}\n{self.log_tail()}")
        self.started = True
        self.r.wait_listen(self.ip, self.port)
        return self

    def postconf(self, *args):
        return self.r.run(["postconf", "-c", str(self.etc)] + list(args))

    def log_text(self):
        try:
            return (self.dir / "postfix.log").read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=30):
        return "\n".join(self.log_text().splitlines()[-n:])

    def maildir(self, user):
        local, domain = user.split("@")
        return self.mail / domain / local

    def delivered(self, user=None):
        """Messages delivered (files in new/ and cur/), one user or all."""
        if user:
            return maildir_count(self.maildir(user))
        n = 0
        for u in self.users:
            n += maildir_count(self.maildir(u))
        return n

    def queued(self):
        n = 0
        for sub in ("incoming", "active", "deferred", "maildrop", "hold"):
            for _, _, files in os.walk(self.dir / "queue" / sub):
                n += len(files)
        return n

    def wait_delivered(self, n, timeout=60, user=None):
        deadline = time.monotonic() + timeout
        while True:
            got = self.delivered(user)
            if got >= n:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"postfix {self.ip}: {got} delivered after {timeout}s, "
                    f"expected {n}; {self.queued()} queued; log:\n"
                    f"{self.log_tail()}")
            time.sleep(0.1)

    def wait_drained(self, timeout=120):
        deadline = time.monotonic() + timeout
        while self.queued() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.queued() == 0

    def stop(self):
        if self.started:
            self.r.run(["postfix", "-c", str(self.etc), "stop"], check=False,
                       timeout=60)
            self.started = False

    def close(self):
        """Stop; keep the log (workdir/postfix.log), remove the instance
        (queue, Maildirs)."""
        self.stop()
        if self.dir.is_dir():
            try:
                shutil.copy(self.dir / "postfix.log",
                            self.workdir / "postfix.log")
            except OSError:
                pass
            shutil.rmtree(self.dir, ignore_errors=True)
        link = self.workdir / "instance"
        if link.is_symlink():
            link.unlink()


# ---------------------------------------------------------------- Maildir

def maildir_files(md):
    """Message files of one Maildir (new/ then cur/), sorted by name."""
    out = []
    for sub in ("new", "cur"):
        d = Path(md) / sub
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.is_file())
    return out


def maildir_count(md):
    n = 0
    for sub in ("new", "cur"):
        try:
            with os.scandir(Path(md) / sub) as it:
                n += sum(1 for _ in it)
        except FileNotFoundError:
            pass
    return n


def wait_files(md, n, timeout, what=None):
    """The messages of Maildir `md` once it holds at least `n`."""
    deadline = time.monotonic() + timeout
    while True:
        got = maildir_count(md)
        if got >= n:
            return maildir_messages(md)
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or md}: {got} messages after "
                                 f"{timeout}s, expected {n}")
        time.sleep(0.1)


def maildir_messages(md):
    """[bytes] of every message in one Maildir."""
    return [p.read_bytes() for p in maildir_files(md)]


def is_maildir(md):
    return all((Path(md) / s).is_dir() for s in ("tmp", "new", "cur"))


def all_maildirs(root):
    """{path relative to root: Maildir path} of every Maildir below root."""
    out = {}
    for dirpath, dirnames, _ in os.walk(root):
        if {"tmp", "new", "cur"} <= set(dirnames):
            out[os.path.relpath(dirpath, root)] = Path(dirpath)
            dirnames[:] = [d for d in dirnames if d not in ("tmp", "new",
                                                            "cur")]
    return out


def split_delivered(raw):
    """A locally delivered file -> (return_path, delivered_to, spooled):
    "Return-Path: <s>\\r\\nDelivered-To: <r>\\r\\n" + the spooled message
    (our Received: first, then the client's data)."""
    m = re.match(rb"Return-Path: <([^>\r\n]*)>\r\nDelivered-To: ([^\r\n]*)\r\n",
                 raw)
    if not m:
        raise AssertionError(f"no Return-Path/Delivered-To on top: "
                             f"{raw[:200]!r}")
    dt = m.group(2).decode(errors="replace").strip()
    if dt.startswith("<") and dt.endswith(">"):
        dt = dt[1:-1]
    return m.group(1).decode(errors="replace"), dt, raw[m.end():]


RECEIVED_ID_RE = re.compile(rb"\bid ([0-9A-Z]{14})\b")


def received_qid(spooled):
    """The queue ID in our Received: header (first header field)."""
    end = spooled.find(b"\r\n\r\n")
    first = spooled[:end if end > 0 else 2000]
    m = re.match(rb"Received:(.*?)\r\n(?![ \t])", first + b"\r\n", re.S)
    if not m:
        return None
    q = RECEIVED_ID_RE.search(m.group(1))
    return q.group(1).decode() if q else None


def headers_and_body(raw):
    i = raw.find(b"\r\n\r\n")
    if i < 0:
        i = raw.find(b"\n\n")
        return (raw, b"") if i < 0 else (raw[:i + 1], raw[i + 2:])
    return raw[:i + 2], raw[i + 4:]


# ---------------------------------------------------------------- DSN

STATUS_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")


def parse_dsn(raw):
    """Check `raw` is an RFC 3464 / RFC 6522 delivery status notification
    and return {"msg": the email.message, "per_message": {field: value},
    "recipients": [{field: value}], "original": the third part or None,
    "text": the human-readable part}. Field names lower case. Raises
    AssertionError naming what is wrong."""
    if isinstance(raw, str):
        raw = raw.encode()
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    ct = msg.get_content_type()
    assert ct == "multipart/report", f"bounce Content-Type {ct}"
    assert (msg.get_param("report-type") or "").lower() in (
        "delivery-status", "global-delivery-status"), \
        f"report-type {msg.get_param('report-type')}"
    assert msg.get_boundary(), "no boundary"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) in (2, 3), \
        f"{len(parts) if isinstance(parts, list) else 0} parts"
    assert parts[0].get_content_maintype() == "text", \
        f"first part {parts[0].get_content_type()}"
    ds = parts[1]
    assert ds.get_content_type() in ("message/delivery-status",
                                     "message/global-delivery-status"), \
        f"second part {ds.get_content_type()}"
    blocks = ds.get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2, \
        f"delivery-status blocks: {blocks!r}"

    def fields(b):
        return {k.lower(): " ".join(str(v).split()) for k, v in b.items()}

    per_msg = fields(blocks[0])
    assert "reporting-mta" in per_msg, f"no Reporting-MTA: {per_msg}"
    rcpts = []
    for b in blocks[1:]:
        f = fields(b)
        if not f:
            continue
        for need in ("final-recipient", "action", "status"):
            assert need in f, f"recipient block without {need}: {f}"
        assert f["action"].lower() in ACTIONS, f"Action {f['action']}"
        assert STATUS_RE.match(f["status"].split()[0]), \
            f"Status {f['status']}"
        assert ";" in f["final-recipient"], \
            f"Final-Recipient without address type: {f['final-recipient']}"
        f["final-recipient-addr"] = f["final-recipient"].split(";", 1)[1] \
            .strip().strip("<>")
        rcpts.append(f)
    assert rcpts, "no per-recipient block"
    original = parts[2] if len(parts) == 3 else None
    if original is not None:
        assert original.get_content_type() in (
            "text/rfc822-headers", "message/rfc822", "message/global",
            "message/global-headers"), \
            f"third part {original.get_content_type()}"
    text = parts[0].get_payload(decode=True) or b""
    return {"msg": msg, "per_message": per_msg, "recipients": rcpts,
            "original": original, "text": text.decode(errors="replace")}


def dsn_original_text(d):
    """The third part as bytes (headers, or the whole message)."""
    o = d["original"]
    if o is None:
        return b""
    p = o.get_payload()
    if isinstance(p, list):
        return b"".join(x.as_bytes() for x in p)
    return o.get_payload(decode=True) or str(p).encode()


# ---------------------------------------------------------------- log

DELIVERY_RE = re.compile(
    r"\b([0-9A-Za-z]{8,20}): to=<([^>]*)>,(?: orig_to=<([^>]*)>,)?"
    r"(?P<rest>.*)$", re.M)
FIELD_RE = re.compile(r"\b(relay|dsn|status|delay)=([^,\s]+)")


def deliveries(text):
    """The daemon's per-attempt lines `QID: to=<r>, relay=..., dsn=X.Y.Z,
    status=sent|deferred|bounced (...)` as dicts (qid, to, orig_to, relay,
    dsn, status, text, time: the line's time stamp in seconds since the
    epoch or None, line)."""
    out = []
    for m in DELIVERY_RE.finditer(text):
        rest = m.group("rest")
        f = dict(FIELD_RE.findall(rest))
        if "status" not in f:
            continue
        paren = re.search(r"status=\S+ \((.*)\)\s*$", rest)
        bol = text.rfind("\n", 0, m.start()) + 1
        ts = LOG_TS_RE.match(text, bol)
        out.append({"qid": m.group(1), "to": m.group(2),
                    "orig_to": m.group(3), "relay": f.get("relay"),
                    "dsn": f.get("dsn"), "status": f.get("status"),
                    "text": paren.group(1) if paren else "",
                    "time": _log_time(ts.group(1)) if ts else None,
                    "line": m.group(0)})
    return out


# dpmaild's log lines start with an ISO 8601 UTC time stamp
LOG_TS_RE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")


def _log_time(iso):
    """Seconds since the epoch of a log time stamp (UTC)."""
    import calendar
    day, _, rest = iso.partition("T")
    hms, _, frac = rest.partition(".")
    t = calendar.timegm(time.strptime(f"{day} {hms}", "%Y-%m-%d %H:%M:%S"))
    return t + (float("0." + frac) if frac else 0.0)


def wait_deliveries(lab, pred, timeout=60, what="delivery log lines"):
    """Until pred(deliveries(log)) is true; returns the list."""
    deadline = time.monotonic() + timeout
    while True:
        d = deliveries(lab.log_text())
        if pred(d):
            return d
        if time.monotonic() > deadline:
            tail = "\n".join(x["line"] for x in d[-15:])
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what}; delivery lines:\n{tail}\n"
                                 f"log tail:\n{lab.log_tail(30)}")
        time.sleep(0.1)


def status_of(lab, qid=None, to=None):
    """[statuses] logged for a queue ID and/or recipient, in order."""
    return [d["status"] for d in deliveries(lab.log_text())
            if (qid is None or d["qid"] == qid)
            and (to is None or d["to"].lower() == to.lower())]


# ---------------------------------------------------------------- clients

def message(tag, sender="alice@dpmail.test", to="x@a.test", size=600,
            extra_headers=()):
    """A small unique message (CRLF, a leading-dot line, 8-bit text):
    Message-Id <tag@lab.example>."""
    head = (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: mta {tag}\r\n"
            f"Message-Id: <{tag}@lab.example>\r\n"
            + "".join(f"{h}\r\n" for h in extra_headers) +
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n").encode()
    body = (f"id {tag}\r\n.leading dot\r\n..two dots\r\n"
            f"gr\u00fc\u00dfe {tag}\r\n").encode()
    line = f"{tag} the quick brown fox jumps over the lazy dog\r\n".encode()
    while len(head) + len(body) < size:
        body += line
    return head + body


MSGID_RE = re.compile(rb"^Message-Id: <([^>]+)@lab\.example>\r?$", re.M | re.I)


def msgid_tag(raw):
    m = MSGID_RE.search(raw)
    return m.group(1).decode() if m else None


def send_one(ns, sender, rcpts, data, host=DAEMON_IP, port=25, params="",
             timeout=30, rcpt_params=""):
    """One transaction on a fresh connection (`params` after MAIL FROM,
    `rcpt_params` after every RCPT TO, e.g. "NOTIFY=DELAY,FAILURE").
    Returns (qid or None, {rcpt: Reply}, final Reply or None)."""
    with sc.Conn(ns, host, port, timeout=timeout) as c:
        c.ehlo("client.example")
        r = c.cmd(f"MAIL FROM:<{sender}>{(' ' + params) if params else ''}")
        if r.code != 250:
            return None, {}, r
        rr = {}
        for a in rcpts:
            rr[a] = c.cmd(f"RCPT TO:<{a}>"
                          f"{(' ' + rcpt_params) if rcpt_params else ''}")
        if not any(x.code == 250 for x in rr.values()):
            return None, rr, None
        fin = c.data(data)
        c.send(b"QUIT\r\n")
        return (fin.qid if fin.code == 250 else None), rr, fin


def send(w, rcpts, data, sender="alice@dpmail.test", params="",
         rcpt_params=""):
    """One message to the daemon of MtaWorld `w` (send_one); asserts it
    was taken (250 with a queue ID). Returns the queue ID."""
    qid, rr, fin = send_one(w.lab.ns, sender, rcpts, data, params=params,
                            rcpt_params=rcpt_params)
    assert fin is not None and fin.code == 250 and qid, (rr, fin)
    return qid


async def _send_session(ns, host, port, work, results, timeout, holds=()):
    loop = asyncio.get_running_loop()
    sent = 0
    sock = sc.ns_socket(ns)
    sock.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
    reader, writer = await asyncio.open_connection(sock=sock)
    rd, pending = sc.ReplyReader(), []

    async def reply():
        return await sc._read_reply(reader, rd, pending, timeout)
    try:
        r = await reply()
        if r.code != 220:
            raise sc.SMTPError(f"greeting {r}")
        writer.write(b"EHLO client.example\r\n")
        await reply()
        while work:
            for at, ev in holds:        # parked, the connection open
                while sent == at and not ev.is_set():
                    await asyncio.sleep(0.01)
            sent += 1
            key, sender, rcpts, data = work.pop()
            cmds = [f"MAIL FROM:<{sender}>\r\n"] + \
                [f"RCPT TO:<{a}>\r\n" for a in rcpts] + ["DATA\r\n"]
            writer.write("".join(cmds).encode())
            reps = [await reply() for _ in cmds]
            if reps[-1].code != 354:
                results[key] = ("rejected", [str(x) for x in reps])
                writer.write(b"RSET\r\n")
                await reply()
                continue
            writer.write(sc.dot_stuff(data) + b".\r\n")
            await writer.drain()
            r = await reply()
            results[key] = (r.qid, r.code) if r.code == 250 else \
                ("failed", str(r))
        writer.write(b"QUIT\r\n")
        await writer.drain()
    finally:
        writer.close()


def send_many(ns, items, sessions=8, per_conn=100, host=DAEMON_IP, port=25,
              timeout=60, holds=()):
    """Send `items` [(key, sender, [rcpts], data)] over `sessions`
    parallel connections, `per_conn` messages each (pipelined MAIL/RCPT/
    DATA). Returns {key: (qid, 250)} for the accepted ones and
    {key: ("rejected"|"failed"|"error", detail)} for the others.
    `holds` [(count, threading.Event)]: each connection, once it has sent
    `count` messages, waits (still open) until the event is set."""
    results = {}
    batches = [list(reversed(items[i:i + per_conn]))
               for i in range(0, len(items), per_conn)]

    async def worker(q):
        while q:
            b = q.pop()
            keys = [x[0] for x in b]
            try:
                await _send_session(ns, host, port, b, results, timeout,
                                    holds)
            except (OSError, asyncio.TimeoutError, sc.SMTPError,
                    ConnectionError) as e:
                for k in keys:
                    results.setdefault(k, ("error", repr(e)))

    async def main():
        q = list(reversed(batches))
        await asyncio.gather(*(worker(q) for _ in range(sessions)))
    asyncio.run(main())
    return results


# ---------------------------------------------------------------- the world

def start_world(lb, workdir, conf, made):
    """Start the daemon of `lb` (a Lab made with mta_config's `conf`) in an
    MtaWorld at `workdir`. The world goes on `made` first, so that the
    fixture's teardown (lab.close_labs) closes it even when the start
    fails; a failed start fails the test. Returns the world, .mail_dir
    set."""
    import pytest
    world = MtaWorld(lb, workdir)
    made.append(world)
    try:
        lb.start()
    except LabError as e:
        pytest.fail(f"lab start ({lb.pmd}): {e}", pytrace=False)
    world.mail_dir = Path(conf["mailbox"]["dir"])
    return world


class MtaWorld:
    """Everything a test starts around the daemon, closed in one go."""

    def __init__(self, lab, workdir):
        self.lab = lab
        self.r = NsRunner(lab)
        self.dir = Path(workdir)
        self.addresses = []
        self.dns = None
        self.things = []

    def add_addresses(self, ips):
        add_addresses(self.r, ips)
        self.addresses += [ip for ip in ips if ip not in self.addresses]

    def start_dns(self, **zone):
        self.dns = Dns(self.r, self.dir / "dns", **zone).start()
        self.things.append(self.dns)
        return self.dns

    def minisink(self, ip, port=25, **kw):
        if ip != KERNEL_IP and ip not in self.addresses:
            self.add_addresses([ip])
        s = MiniSink(self.lab.ns, ip, port, **kw)
        self.things.append(s)
        return s

    def smtp_sink(self, ip, port=25, **kw):
        if ip != KERNEL_IP and ip not in self.addresses:
            self.add_addresses([ip])
        s = SmtpSink(self.r, ip, port, **kw)
        self.things.append(s)
        return s

    def postfix(self, ip, name="postfix", **kw):
        if ip != KERNEL_IP and ip not in self.addresses:
            self.add_addresses([ip])
        p = Postfix(self.r, self.dir / name, ip, **kw).start()
        self.things.append(p)
        return p

    def after_restart(self):
        """A restarted daemon on tap recreated the kernel interface: put
        the extra addresses back (listening sockets bound to them keep
        working once the address is back) and restart dnsmasq."""
        add_addresses(self.r, self.addresses)
        if self.dns is not None:
            self.dns.restart()

    def close(self):
        for t in reversed(self.things):
            try:
                t.close()
            except Exception:
                pass
        self.things = []


class BareNs(NsRunner):
    """A lab-style namespace (dpm-<pid>-<n>) without a daemon: a veth
    end `dpm0` holds 198.18.0.1/24, so the pieces above can be
    checked on their own (kernel clients talk to kernel servers)."""

    def __init__(self):
        import lab as labmod
        labmod._SEQ[0] += 1
        ns = f"dpm-{os.getpid()}-{labmod._SEQ[0]}"
        labmod.sh(["ip", "netns", "add", ns])
        super().__init__(ns, "dpm0")
        self.run(["ip", "link", "set", "lo", "up"])
        # a veth pair (no dummy module on every kernel); dpm0p just up
        self.run(["ip", "link", "add", "dpm0", "type", "veth", "peer",
                  "name", "dpm0p"])
        self.run(["ip", "link", "set", "dpm0p", "up"])
        self.run(["ip", "addr", "add", f"{KERNEL_IP}/{PREFIX_LEN}", "dev",
                  "dpm0"])
        self.run(["ip", "link", "set", "dpm0", "up"])

    def close(self):
        import lab as labmod
        if self.ns:
            labmod._delete_ns(self.ns)
            self.ns = None
