"""The daemon's log as an operator reads it: [log] output = syslog (lines
caught on a Unix datagram socket standing in for syslogd at /dev/log),
output = FILE, format = json, and the event lines of one message relayed
to a sink and one delivered locally (connect, accepted with size, sender
and recipient count, each delivery attempt with relay, delay, DSN status
and the remote reply, removal, disconnect), in the spirit of Postfix's.
The same run checks what `dpmailctl stats` and the metrics say about TCP
connections by state and per listener. A peer's flood of rejections is
rate-limited in the log, and what was dropped is counted there.

syslog: when /dev/log does not exist the test binds it for its own run
and removes it afterwards; when it exists (a real syslogd, or another
run of this test), the daemon is started in a private mount namespace
(`unshare -m`) with the test's socket bind-mounted over /dev/log
(Lab.launcher), so the machine's syslog is left alone.
"""

import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import lab as labmod
import mtalab as ml
import smtpclient as sc
import smtplab as sl

pytestmark = [pytest.mark.netns]

SENDER = "alice@dpmail.test"
LOCAL_RCPT = "bob@dpmail.test"
SINK_IP = ml.SINK_IPS[3]
SINK_PORT = 2526
RELAY_RCPT = "t@sink.test"
CLIENT = labmod.KERNEL_IP

# RFC 3164 as log.c writes it: "<PRI>dpmaild[PID]: MSG" (syslogd stamps)
SYSLOG_RE = re.compile(r"^<(\d{1,3})>dpmaild\[(\d+)\]: (.*)$", re.S)
FACILITY_MAIL = 2
SEVERITY = {"error": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}


class LogLab(labmod.Lab):
    """A Lab whose daemon logs somewhere else than its stdout: log_text()
    adds what `extra()` returns (the file, or the syslog lines), so that
    readiness, the counter table and sanitizer reports are all seen."""

    def __init__(self, *a, extra=lambda: "", **kw):
        super().__init__(*a, **kw)
        self.extra = extra

    def log_text(self):
        return super().log_text() + self.extra()


class SyslogSink:
    """A Unix datagram socket that stands in for syslogd at /dev/log.
    `launcher` is what the daemon's command line needs in front of it
    (empty when the socket is /dev/log itself)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.datagrams = []
        self.launcher = []
        self.path = None
        self._lock = threading.Lock()
        self._stop = False
        if not os.path.lexists("/dev/log"):
            try:
                self.sock.bind("/dev/log")
                self.path = "/dev/log"
            except OSError:
                pass            # made meanwhile (another run): as below
        if self.path is None:
            self.path = f"/tmp/dpm-{os.getpid()}-devlog.sock"
            if os.path.lexists(self.path):
                os.unlink(self.path)
            self.sock.bind(self.path)
            self.launcher = ["unshare", "-m", "sh", "-c",
                             'mount --bind "$0" /dev/log && exec "$@"',
                             self.path]
        self._ino = os.stat(self.path).st_ino
        self.sock.settimeout(0.2)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.datagrams.append(d.decode(errors="replace"))

    def lines(self, pid=None):
        """(pri, pid, msg) of every datagram from dpmaild (the pid's only,
        when given): other programs may log here too while /dev/log is
        ours."""
        with self._lock:
            grams = list(self.datagrams)
        out = []
        for g in grams:
            m = SYSLOG_RE.match(g)
            if m and (pid is None or int(m.group(2)) == pid):
                out.append((int(m.group(1)), int(m.group(2)), m.group(3)))
        return out

    def text(self):
        """The daemon's lines as a log file would have them."""
        return "".join(f"syslog: {msg}\n" for _, _, msg in self.lines())

    def close(self):
        self._stop = True
        self._t.join(5)
        self.sock.close()
        try:
            if os.stat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass


@pytest.fixture
def log_lab(request, pmd, tmp_path, lab_preflight):
    """log_lab(log={...}, syslog=None, **mta): dpmaild with mtalab's MTA
    settings (updated with `mta`), [log] as given, `sink.test` routed to a minisink at
    [SINK_IP]:SINK_PORT; returns the MtaWorld (.lab, .sink)."""
    made = []

    def make(log, syslog=None, extra=None, **mta):
        conf = ml.mta_config(tmp_path / "conf",
                             transport=[f"sink.test [{SINK_IP}]:{SINK_PORT}"],
                             extra={"log": log, **(extra or {})}, **mta)
        out = log.get("output")
        if syslog is not None:
            read = syslog.text
        elif out not in (None, "stderr", "syslog"):
            read = lambda: Path(out).read_text(errors="replace") \
                if Path(out).exists() else ""
        else:
            read = lambda: ""
        lb = LogLab(pmd, tmp_path / "daemon", name=request.node.name,
                    config=conf, extra=read)
        if syslog is not None:
            lb.launcher = list(syslog.launcher)
        world = ml.start_world(lb, tmp_path / "world", conf, made)
        world.sink = world.minisink(SINK_IP, SINK_PORT)
        sl.wait_reachable(lb)
        return world

    yield make
    labmod.close_labs(request, made)


@pytest.fixture
def syslog_sink():
    s = SyslogSink()
    try:
        yield s
    finally:
        s.close()


def send_two(w):
    """One message for a local mailbox, one relayed to the sink; both
    delivered. Returns {"local": (qid, data), "relay": (qid, data)}."""
    dl = ml.message("loglocal", to=LOCAL_RCPT)
    dr = ml.message("logrelay", to=RELAY_RCPT)
    ql = ml.send(w, [LOCAL_RCPT], dl)
    qr = ml.send(w, [RELAY_RCPT], dr)
    w.sink.wait_count(1, 30)
    ml.wait_files(ml.mailbox_path(w.mail_dir, "bob"), 1, 30)
    return {"local": (ql, dl), "relay": (qr, dr)}


def wait_line(lab, pattern, what, timeout=30):
    rx = re.compile(pattern, re.M)
    return sl.wait_for(lambda: rx.search(lab.log_text()), timeout,
                       what=f"{what}: /{pattern}/ in the log")


# ---------------------------------------------------------------- tests

@pytest.mark.pmds("tap")
def test_syslog_output(log_lab, syslog_sink):
    """[log] output = syslog: RFC 3164 datagrams "<PRI>dpmaild[PID]: ..."
    with facility mail and the level's severity, from the daemon's pid,
    and the queue ID of a message sent in its accepted and delivery
    lines."""
    w = log_lab({"output": "syslog"}, syslog=syslog_sink)
    lb = w.lab
    sent = send_two(w)
    ql, _ = sent["local"]
    qr, _ = sent["relay"]
    sl.wait_for(lambda: any(ql in m and "status=sent" in m
                            for _, _, m in syslog_sink.lines(lb.pid)) and
                any(qr in m and "status=sent" in m
                    for _, _, m in syslog_sink.lines(lb.pid)),
                30, what="both deliveries logged to syslog")
    lines = syslog_sink.lines(lb.pid)
    assert lines, syslog_sink.datagrams[:5]
    for pri, pid, msg in lines:
        assert pri >> 3 == FACILITY_MAIL, (pri, msg)
        assert "\n" not in msg, msg      # one datagram, one line
    ready = [(p, m) for p, _, m in lines if "dpmaild: ready" in m]
    assert ready and ready[0][0] & 7 == SEVERITY["notice"], ready
    for qid in (ql, qr):
        mine = [(p, m) for p, _, m in lines if qid in m]
        assert any(re.search(rf"smtpd: {qid}: client=.*: queued$", m)
                   for _, m in mine), mine
        assert any("status=sent" in m for _, m in mine), mine
        assert all(p & 7 == SEVERITY["info"] for p, _ in mine), mine
    # nothing went to stderr but what comes before the log is open and
    # the counter table at exit
    assert "queued" not in labmod.Lab.log_text(lb)


@pytest.mark.pmds("tap")
def test_json_lines_to_a_file(log_lab, tmp_path):
    """[log] format = json, output = FILE: every line of the file is one
    JSON object with time, level and msg, and a message's lines carry
    its queue ID as "qid" (with "component") besides."""
    out = tmp_path / "dpmaild.jsonl"
    w = log_lab({"format": "json", "output": str(out)})
    sent = send_two(w)
    for qid, _ in sent.values():
        sl.wait_for(lambda: qid in out.read_text() and
                    re.search(rf'{qid}: to=<[^>]*>,[^"]*status=sent',
                              out.read_text()),
                    30, what=f"{qid} delivered in the JSON log")
    text = out.read_text()
    assert text.endswith("\n")
    objs = [json.loads(l) for l in text.splitlines()]
    assert objs
    for o in objs:
        assert set(o) >= {"time", "level", "msg"}, o
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                            o["time"]), o
        assert o["level"] in SEVERITY, o
    for qid, _ in sent.values():
        mine = [o["msg"] for o in objs if qid in o["msg"]]
        assert any(re.search(r"client=.*: queued$", m) for m in mine), mine
        assert any("status=sent" in m for m in mine), mine
        # "component: QID: ..." lines carry both as fields
        tagged = [o for o in objs if o.get("qid") == qid]
        assert {o["component"] for o in tagged} >= {"smtpd", "qmgr"}, \
            tagged
        assert all(o["msg"].startswith(f"{o['component']}: {qid}: ")
                   for o in tagged), tagged
        assert len(tagged) == len([m for m in mine
                                   if re.match(rf"\w+: {qid}: ", m)])
    assert all("qid" not in o for o in objs
               if not re.match(r"\w+: [0-9A-Z]{14}: ", o["msg"]))
    assert any("dpmaild: ready" in o["msg"] and o["level"] == "notice"
               for o in objs)
    # the daemon's stdout has the counter table at exit, not the log
    assert "queued" not in labmod.Lab.log_text(w.lab)


def check_events(text, qid, data, rcpt, relay_re, reply_re):
    """The Postfix-like life of one message in `text`, in order."""
    acc = re.search(rf"^.*smtpd: {qid}: client={re.escape(CLIENT)}"
                    rf"\[(\d+)\], from=<{re.escape(SENDER)}>, nrcpt=1, "
                    rf"size=(\d+)(?:, [^:]*)?: queued$", text, re.M)
    assert acc, f"accepted line of {qid}:\n{text}"
    port, size = acc.group(1), int(acc.group(2))
    # size: the message as spooled (our Received: on top of the data)
    assert len(data) <= size <= len(data) + 1024, (size, len(data))
    client = re.escape(f"{CLIENT}[{port}]")
    conn = re.search(rf"^.*smtpd: connect from {client} to port 25$", text,
                     re.M)
    assert conn and conn.start() < acc.start(), \
        f"connect line of {CLIENT}[{port}] before {qid}'s:\n{text}"
    disc = re.search(rf"^.*smtpd: disconnect from {client} commands=\d+ "
                     rf"errors=0 messages=1\b", text, re.M)
    assert disc and disc.start() > acc.start(), \
        f"disconnect line of {CLIENT}[{port}]:\n{text}"
    act = re.search(rf"^.*qmgr: {qid}: from=<{re.escape(SENDER)}>, "
                    rf"size={size}, nrcpt=1 \(queue active\)$", text, re.M)
    assert act, f"queue active line of {qid}:\n{text}"
    dlv = re.search(rf"^.*: {qid}: to=<{re.escape(rcpt)}>, relay={relay_re}, "
                    rf"delay=(\d+\.\d\d), dsn=2\.0\.0, status=sent "
                    rf"\(({reply_re})\)$", text, re.M)
    assert dlv and dlv.start() > act.start(), \
        f"delivery line of {qid}:\n{text}"
    assert 0 <= float(dlv.group(1)) < 60, dlv.group(0)
    rem = re.search(rf"^.*qmgr: {qid}: removed$", text, re.M)
    assert rem and rem.start() > dlv.start(), f"removed line of {qid}"


@pytest.mark.pmds("tap")
def test_event_lines_relay_and_local(log_lab, tmp_path):
    """[log] output = FILE (text): for one message relayed to a sink and
    one delivered locally, the connect, accepted (size, sender, nrcpt),
    queue active, delivery (relay, delay, dsn, status and the remote's
    reply or the mailbox), removed and disconnect lines, each with the
    client's address or the queue ID. Then stats and metrics agree on
    TCP connections by state and per listener."""
    out = tmp_path / "dpmaild.log"
    w = log_lab({"output": str(out)})
    lb = w.lab
    sent = send_two(w)
    ql, dl = sent["local"]
    qr, dr = sent["relay"]
    wait_line(lb, rf"qmgr: {ql}: removed$", "local message removed")
    wait_line(lb, rf"qmgr: {qr}: removed$", "relayed message removed")
    wait_line(lb, r"smtpd: disconnect from .* messages=1", "disconnects")
    text = out.read_text()
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z notice: dpmaild ", text)
    check_events(text, ql, dl, LOCAL_RCPT, "local",
                 r"delivered to maildir \S+ uid \d+")
    check_events(text, qr, dr, RELAY_RCPT,
                 re.escape(f"{SINK_IP}[{SINK_IP}]:{SINK_PORT}"),
                 r"250 \S+ .*")
    assert "queued" not in labmod.Lab.log_text(lb)

    # TCP by state and per listener: stats and metrics agree
    ctl = labmod.daemon_binary().parent / "dpmailctl"
    res = subprocess.run([str(ctl), "stats", "--json", "-s", lb.ctl_socket],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    st = s["workers"][0]["tcp_states"]
    assert set(st) == {"listen", "syn_sent", "syn_received", "established",
                       "close_wait", "fin_wait_1", "closing", "last_ack",
                       "fin_wait_2", "time_wait"}, st
    assert st["listen"] >= 2, st                  # 25 and 587 at least
    assert s["total"]["tcp_states"] == st
    l25 = s["workers"][0]["listeners"]["25"]
    assert l25["listening"] == 1 and l25["accepted"] >= 2, l25
    assert l25["refused"] == 0 and l25["over_limit"] == 0, l25
    assert s["workers"][0]["stack"]["tcp.accepted"] >= l25["accepted"]
    human = subprocess.run([str(ctl), "stats", "-s", lb.ctl_socket],
                           capture_output=True, text=True, timeout=30).stdout
    assert "tcp connections by state" in human, human
    assert re.search(r"^\s+listen\s+\d+$", human, re.M), human
    assert re.search(r"^\s+25\s+\d+\s+\d+\s+\d+", human, re.M), human
    m = lb.run(["curl", "-sS", "--max-time", "10",
                "http://127.0.0.1:9187/metrics"], timeout=20).stdout
    assert "# TYPE dpmail_tcp_connections gauge" in m
    assert "# TYPE dpmail_listener_accepted_total counter" in m
    assert "# TYPE dpmail_listener_open gauge" in m
    got = re.search(r'^dpmail_tcp_connections\{worker="0",state="listen"\} '
                    r'(\d+)$', m, re.M)
    assert got and int(got.group(1)) == st["listen"], m
    acc = re.search(r'^dpmail_listener_accepted_total\{worker="0",'
                    r'listener="25"\} (\d+)$', m, re.M)
    assert acc and int(acc.group(1)) >= l25["accepted"], m


@pytest.mark.pmds("tap")
def test_event_lines_bounce_deferral_expiry(log_lab, tmp_path):
    """A remote 550 (bounced, with the reply, and the sender's
    non-delivery notification), a remote 451 (deferred, retried, then
    expired and returned to sender) and a mail loop bounced by the queue
    manager: each recipient's outcome is one line with relay, delay, dsn
    and status, as Postfix's."""
    out = tmp_path / "dpmaild.log"
    w = log_lab({"output": str(out)}, retry_first_s=1, retry_max_s=1,
                queue_lifetime_s=3)
    w.sink.rcpt_replies = {"nouser@sink.test": "550 5.1.1 no such user",
                           "later@sink.test": "451 4.2.0 try again later"}
    qb = ml.send(w, ["nouser@sink.test"],
                 ml.message("logbounce", to="nouser@sink.test"))
    qd = ml.send(w, ["later@sink.test"],
                 ml.message("logdefer", to="later@sink.test"))
    hops = [f"Received: from hop{i}.example by hop{i + 1}.example; "
            f"Thu, 26 Nov 2026 10:00:{i % 60:02d} +0000" for i in range(50)]
    ql = ml.send(w, [LOCAL_RCPT], b"".join(h.encode() + b"\r\n"
                                          for h in hops) +
                 ml.message("logloop", to=LOCAL_RCPT))
    lb = w.lab
    wait_line(lb, rf"{qd}: to=<later@sink\.test>, .*status=expired",
              "the deferred message expired")
    for q in (qb, qd, ql):
        wait_line(lb, rf"qmgr: {q}: sender non-delivery notification: \w+$",
                  f"the bounce of {q}")
    # "removed" follows once the notification is in the spool (fdatasync)
    for q in (qb, qd):
        wait_line(lb, rf"qmgr: {q}: removed$", f"{q} removed")
    text = out.read_text()
    sink = re.escape(f"{SINK_IP}[{SINK_IP}]:{SINK_PORT}")
    # remote 550: bounced at once, the reply quoted (mta_out.c)
    assert re.search(rf"mta_out: {qb}: to=<nouser@sink\.test>, relay={sink}, "
                     rf"delay=\d+\.\d\d, dsn=5\.1\.1, status=bounced "
                     rf"\(550 5\.1\.1 no such user\)$", text, re.M), text
    # remote 451: deferred at each try, with the reply (mta_out.c)
    tries = re.findall(rf"mta_out: {qd}: to=<later@sink\.test>, relay={sink}, "
                       rf"delay=\d+\.\d\d, dsn=4\.2\.0, status=deferred "
                       rf"\(451 4\.2\.0 try again later\)$", text, re.M)
    assert len(tries) >= 2, text
    # Lines the queue manager writes (mta/mta_qmgr.c): expiry and the
    # relay=none bounces carry relay=, delay= and dsn= as every other
    # delivery line does.
    assert re.search(rf"qmgr: {qd}: to=<later@sink\.test>, relay=\S+, "
                     rf"delay=\d+\.\d\d, dsn=4\.4\.7, status=expired, "
                     rf"returned to sender \(.*451 4\.2\.0 try again later"
                     rf".*\)$", text, re.M), \
        f"expiry line of {qd} without relay=, delay= or dsn=4.4.7:\n" + \
        "\n".join(l for l in text.splitlines() if qd in l)
    assert re.search(rf"qmgr: {ql}: to=<{re.escape(LOCAL_RCPT)}>, relay=none, "
                     rf"delay=\d+\.\d\d, dsn=5\.4\.6, status=bounced "
                     rf"\(mail forwarding loop", text, re.M), \
        f"loop bounce line of {ql} without delay=:\n" + \
        "\n".join(l for l in text.splitlines() if ql in l)


@pytest.mark.pmds("tap")
def test_peer_flood_is_rate_limited(log_lab, tmp_path):
    """A client that makes the daemon log as fast as it can write (300
    pipelined RCPTs to unknown users) gets a 550 for each, but the log
    takes the call site's burst and rate (LOG_RL: 20, then 10 a second),
    not 300 lines; the next line after the flood says how many were
    suppressed, and written + suppressed is exactly what the peer sent."""
    out = tmp_path / "dpmaild.log"
    w = log_lab({"output": str(out)}, extra={"smtp": {"max_errors": 1000}})
    lb = w.lab
    n = 300
    rx = re.compile(r"reject: RCPT from .*: 550 5\.1\.1 <nouser\d+@dpmail"
                    r"\.test>: user unknown", re.M)
    with sc.Conn(lb.ns, ml.DAEMON_IP, 25, timeout=30) as c:
        assert c.ehlo().code == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        t0 = time.monotonic()
        c.send("".join(f"RCPT TO:<nouser{i}@dpmail.test>\r\n"
                       for i in range(n)))
        reps = [c.reply() for _ in range(n)]
        took = time.monotonic() - t0
        assert all(r.code == 550 and "5.1.1" in r.text for r in reps), \
            [str(r) for r in reps if r.code != 550][:3]
        logged = len(rx.findall(out.read_text()))
        assert 20 <= logged <= 20 + 10 * (took + 1) and logged < n, \
            (logged, took)
        time.sleep(1.2)                  # a token back
        r = c.cmd(f"RCPT TO:<nouser{n}@dpmail.test>")
        assert r.code == 550, r
        counted = re.compile(r"info: log: (\d+) lines like the next were "
                             r"suppressed \(rate limit\)\n.*"
                             rf"<nouser{n}@dpmail\.test>: user unknown")
        m = sl.wait_for(lambda: counted.search(out.read_text()), 10,
                        what="the count of suppressed lines")
        assert logged + int(m.group(1)) == n, (logged, m.group(1))
        assert len(rx.findall(out.read_text())) == logged + 1
        assert c.cmd("QUIT").code == 221
    print(f"\n{n} rejected RCPTs in {took:.2f} s: {logged} logged, "
          f"{m.group(1)} suppressed and counted")
