"""The management plane against a running daemon: dpmailctl over the
control socket (status, stats, queue ..., domain ..., log level, reload,
shutdown --drain), the Prometheus endpoint scraped with curl, and bad
requests written straight to the socket.

dpmailctl is found next to DPMAILD's build (mgmt/dpmailctl) or at
$DPMAILCTL. It talks to the lab's socket (Lab.ctl_socket) from the root
namespace (a Unix socket is a file); curl runs inside the namespace,
where the daemon's metrics listen on 127.0.0.1:9187.
"""

import json
import os
import re
import signal
import socket
import stat
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
MXC = ml.SINK_IPS[3]
SINK_PORT = 2526


def ctl_binary():
    env = os.environ.get("DPMAILCTL")
    if env:
        return Path(env)
    return labmod.daemon_binary().parent / "dpmailctl"


def ctl(lab, *args, check=True, timeout=60):
    """dpmailctl -s <the lab's socket> ARGS; the CompletedProcess."""
    res = subprocess.run([str(ctl_binary()), *args, "-s", lab.ctl_socket],
                         capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"dpmailctl {' '.join(args)}: rc "
                             f"{res.returncode}\nstdout: {res.stdout}\n"
                             f"stderr: {res.stderr}\nlog:\n"
                             f"{lab.log_tail(30)}")
    return res


def ctlj(lab, *args):
    return json.loads(ctl(lab, *args, "--json").stdout)


def raw_request(path, data, timeout=10):
    """Write bytes to the control socket; the reply lines until the
    daemon closes or goes quiet for a moment."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass                        # closed on us (too long): read why
    buf = b""
    try:
        while data.count(b"\n") > buf.count(b"\n") or not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass
    s.close()
    return [json.loads(l) for l in buf.decode().splitlines() if l.strip()]


METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def scrape(lab):
    """{(name, labels): value} and {family: type} from GET /metrics."""
    res = lab.run(["curl", "-sS", "--max-time", "10",
                   "http://127.0.0.1:9187/metrics"], timeout=20)
    vals, types = {}, {}
    for line in res.stdout.splitlines():
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split()
            types[fam] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = METRIC_RE.match(line)
        assert m, f"not Prometheus text: {line!r}"
        vals[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return vals, types


@pytest.fixture
def ctl_lab(request, pmd, tmp_path, lab_preflight):
    """mtalab's MTA settings (users alice, bob, carol) plus `extra`
    config; returns the MtaWorld (.lab is the Lab, .conf_dir holds the
    users, aliases and transport files)."""
    made = []

    def make(extra=None, **kw):
        conf = ml.mta_config(tmp_path / "conf", extra=extra, **kw)
        lb = labmod.Lab(pmd, tmp_path / "daemon", name=request.node.name,
                        config=conf)
        world = ml.start_world(lb, tmp_path / "world", conf, made)
        world.conf_dir = tmp_path / "conf"   # users, aliases, transport
        sl.wait_reachable(lb)
        return world

    yield make
    labmod.close_labs(request, made)


def items(n, tag, to="bob@dpmail.test", sender=SENDER, size=400):
    return [(f"{tag}{i}", sender, [to], ml.message(f"{tag}{i}", sender=sender,
                                                   to=to, size=size))
            for i in range(n)]


# ---------------------------------------------------------------- tests

@pytest.mark.pmds("tap")
def test_status_stats_metrics_log_with_traffic(ctl_lab):
    """Exactly 1,000 messages in: stats says 1,000 accepted and 1,000
    delivered to the local mailbox, the metrics endpoint agrees, status
    names the port and listeners, log level changes at run time."""
    w = ctl_lab()
    lb = w.lab
    st = ctlj(lb, "status")
    assert st["ok"] and st["version"]
    assert st["port"]["driver"] == "net_tap", st["port"]
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", st["port"]["mac"].lower())
    assert [x["worker"] for x in st["workers"]] == [0]
    assert {"proto": "smtp", "port": 25} in st["listeners"]
    assert st["config"] == str(lb.conf_path)
    human = ctl(lb, "status").stdout
    assert "net_tap" in human and "smtp/25" in human, human

    res = ml.send_many(lb.ns, items(1000, "m"), sessions=8, per_conn=125)
    acked = [k for k, v in res.items() if v[1] == 250]
    assert len(acked) == 1000, {k: v for k, v in res.items() if v[1] != 250}

    s = sl.wait_for(lambda: (lambda j: j if j["qmgr"]["delivered_local"]
                             >= 1000 else None)(ctlj(lb, "stats")), 60,
                    what="1,000 local deliveries")
    assert s["total"]["smtp"]["messages_queued"] == 1000
    assert s["total"]["smtp"]["rcpt_accepted"] == 1000
    assert s["qmgr"]["received"] == 1000
    assert s["qmgr"]["delivered_local"] == 1000
    assert s["qmgr"]["deferred"] == 0 and s["qmgr"]["bounced"] == 0
    assert s["spool"]["batches"] >= 1
    # every batch's fdatasync is timed (segment set-up syncs are not)
    nsync = sum(s["spool"]["fdatasync_us"]["count"])
    assert s["spool"]["batches"] <= nsync <= s["spool"]["fsyncs"]
    # a sane mean (the sum once wrapped when nanoseconds went down)
    assert s["spool"]["fdatasync_us"]["sum_us"] < nsync * 1_000_000
    assert s["total"]["stack"]["tcp.accepted"] >= 8
    assert s["workers"][0]["smtp"]["messages_queued"] == 1000
    human = ctl(lb, "stats").stdout
    assert re.search(r"messages accepted\s+1000\b", human), human
    assert ml.maildir_count(w.mail_dir / "bob") == 1000

    # per worker, and a worker that does not exist
    one = ctlj(lb, "stats", "--worker", "0")
    assert len(one["workers"]) == 1
    bad = ctl(lb, "stats", "--worker", "7", check=False)
    assert bad.returncode == 1 and "no worker 7" in bad.stderr

    # --watch prints rates
    p = subprocess.Popen([str(ctl_binary()), "stats", "--watch", "1", "-s",
                          lb.ctl_socket], stdout=subprocess.PIPE, text=True)
    time.sleep(2.5)
    p.send_signal(signal.SIGINT)
    out = p.communicate(timeout=10)[0]
    assert "/s" in out and out.count("--- ") >= 2, out

    # metrics: every family there, and the same figures as stats
    vals, types = scrape(lb)
    s = ctlj(lb, "stats")
    for fam in ("dpmail_port_rx_packets_total", "dpmail_port_tx_packets_total",
                "dpmail_tcp_rx_bytes_total", "dpmail_tcp_tx_bytes_total",
                "dpmail_tcp_live_conns", "dpmail_smtp_messages_queued_total",
                "dpmail_smtp_sessions_live", "dpmail_spool_batches_total",
                "dpmail_spool_fdatasync_seconds", "dpmail_qmgr_msgs_live",
                "dpmail_qmgr_delivered_local_total",
                "dpmail_qmgr_deferred_total", "dpmail_qmgr_bounced_total",
                "dpmail_ip_bad_checksum_total", "dpmail_dataplane_polls_total"):
        assert fam in types, f"family {fam} missing"
    assert types["dpmail_spool_fdatasync_seconds"] == "histogram"
    assert vals[("dpmail_smtp_messages_queued_total", '{worker="0"}')] == 1000
    assert vals[("dpmail_qmgr_delivered_local_total", "")] == \
        s["qmgr"]["delivered_local"]
    assert vals[("dpmail_spool_batches_total", "")] == s["spool"]["batches"]
    nsync = sum(s["spool"]["fdatasync_us"]["count"])
    assert vals[("dpmail_spool_fdatasync_seconds_count", "")] == nsync
    assert vals[("dpmail_spool_fdatasync_seconds_bucket", '{le="+Inf"}')] == \
        nsync
    assert vals[("dpmail_tcp_accepted_total", '{worker="0"}')] == \
        s["total"]["stack"]["tcp.accepted"]

    # log level at run time
    assert ctlj(lb, "log", "level")["level"] == "info"
    assert ctlj(lb, "log", "level", "debug")["level"] == "debug"
    assert "debug" in ctl(lb, "log", "level").stdout
    bad = ctl(lb, "log", "level", "loud", check=False)
    assert bad.returncode == 1 and "not one of" in bad.stderr
    ctl(lb, "log", "level", "info")
    print(f"\nstats after 1,000 messages:\n{human}")


@pytest.mark.pmds("tap")
def test_queue_verbs_on_a_deferred_queue(ctl_lab):
    """relayhost down: list with filters, show, hold/release, summary,
    domain suspend/resume, flush after it comes back (delivered), delete
    (gone, nothing sent), bounce (alice gets the DSN)."""
    w = ctl_lab(relayhost=f"[{MXC}]:{SINK_PORT}", retry_first_s=300,
                retry_max_s=600)
    lb = w.lab
    w.add_addresses([MXC])
    sink = w.minisink(MXC, port=SINK_PORT, start=False)
    qc = [ml.send(w, [f"c{i}@c.test"], ml.message(f"c{i}", to=f"c{i}@c.test"))
          for i in range(3)]
    qb = [ml.send(w, [f"b{i}@b.test"], ml.message(
              f"b{i}", sender="bob@dpmail.test", to=f"b{i}@b.test"),
              sender="bob@dpmail.test")
          for i in range(2)]
    sl.wait_for(lambda: ctlj(lb, "queue", "list", "--state",
                             "deferred")["matched"] == 5, 30,
                what="5 deferred messages")
    assert {m["id"] for m in ctlj(lb, "queue", "list", "--domain",
                                  "c.test")["messages"]} == set(qc)
    assert {m["id"] for m in ctlj(lb, "queue", "list", "--sender",
                                  "bob@dpmail.test")["messages"]} == set(qb)
    assert ctlj(lb, "queue", "list", "--older-than", "1h")["matched"] == 0
    human = ctl(lb, "queue", "list").stdout
    assert all(q in human for q in qc + qb) and "-- 5 messages" in human

    show = ctlj(lb, "queue", "show", qc[0])
    m = show["messages"][0]
    assert m["id"] == qc[0] and m["sender"] == SENDER and m["attempts"] >= 1
    assert m["rcpts"][0]["addr"] == "c0@c.test"
    assert m["rcpts"][0]["state"] == "deferred"
    assert m["rcpts"][0]["next_try"] > time.time()
    assert "attempts" in ctl(lb, "queue", "show", qc[0]).stdout
    nope = ctl(lb, "queue", "show", "NOSUCHQUEUEID0", check=False)
    assert nope.returncode == 1

    summ = ctlj(lb, "queue", "summary")
    assert sum(summ["domains"]["c.test"]) == 3
    assert sum(summ["domains"]["b.test"]) == 2
    assert any(d["deferred"] == 5 for d in summ["dests"]), summ["dests"]
    assert "c.test" in ctl(lb, "queue", "summary").stdout

    # a change to everything must be asked for
    r = ctl(lb, "queue", "delete", check=False)
    assert r.returncode == 1 and "--all" not in r.stdout

    # hold one of c.test's, then the sink comes up and we flush
    assert ctlj(lb, "queue", "hold", qc[2])["matched"] == 1
    assert [x["id"] for x in ctlj(lb, "queue", "list", "--state",
                                  "held")["messages"]] == [qc[2]]
    sink.up()
    assert ctlj(lb, "queue", "flush")["matched"] >= 4
    sink.wait_count(4, 30)
    time.sleep(1)
    assert sink.count() == 4       # the held one stayed
    assert ctlj(lb, "queue", "release", qc[2])["matched"] == 1
    ctl(lb, "queue", "flush", qc[2])
    sink.wait_count(5, 30)
    sl.wait_for(lambda: ctlj(lb, "queue", "list")["matched"] == 0, 30,
                what="an empty queue")

    # suspend: flushing delivers nothing to it; resume delivers
    ctl(lb, "domain", "suspend", f"[{MXC}]:{SINK_PORT}")
    ml.send(w, ["s@c.test"], ml.message("s0", to="s@c.test"))
    time.sleep(2)
    assert sink.count() == 5
    dest = [d for d in ctlj(lb, "queue", "summary")["dests"]
            if d["suspended"]]
    assert dest, "no suspended destination in the summary"
    ctl(lb, "domain", "resume", f"[{MXC}]:{SINK_PORT}")
    sink.wait_count(6, 30)

    # down again: one deleted (never sent), one bounced (DSN to alice)
    sink.down()
    qd = ml.send(w, ["del@c.test"], ml.message("del", to="del@c.test"))
    qx = ml.send(w, ["bnc@c.test"], ml.message("bnc", to="bnc@c.test"))
    sl.wait_for(lambda: ctlj(lb, "queue", "list", "--state",
                             "deferred")["matched"] == 2, 30,
                what="2 deferred")
    assert ctlj(lb, "queue", "delete", qd)["matched"] == 1
    assert ctlj(lb, "queue", "bounce", qx)["matched"] == 1
    raws = ml.wait_files(w.mail_dir / "alice", 1, 30,
                         "the DSN in alice's Maildir")
    dsn = ml.parse_dsn(raws[0])
    assert dsn["recipients"][0]["final-recipient"].lower().endswith(
        "bnc@c.test"), dsn["recipients"]
    assert dsn["recipients"][0]["action"].lower() == "failed"
    sl.wait_for(lambda: ctlj(lb, "queue", "list")["matched"] == 0, 30,
                what="empty")
    sink.up()
    time.sleep(1)
    assert sink.count() == 6        # the deleted one never went out


def conf_with(text, *changes):
    """Config text with (section, key, value) changes applied."""
    for sec, key, val in changes:
        text = labmod.set_ini(text, sec, key, val)
    return text


def reload_ok(lb, text):
    """Write `text` as the daemon's config and reload: the JSON reply."""
    lb.conf_path.write_text(text)
    return ctlj(lb, "reload")


def reload_refused(lb, text):
    """Write `text` and reload: refused (exit 1); dpmailctl's stderr.
    `config check` on the file refuses it first, with the same reason."""
    lb.conf_path.write_text(text)
    c = ctl(lb, "config", "check", str(lb.conf_path), check=False)
    assert c.returncode == 1 and c.stdout == "", (c.returncode, c.stdout,
                                                  c.stderr)
    why = c.stderr.strip().splitlines()[-1]
    cj = ctl(lb, "config", "check", "--json", str(lb.conf_path), check=False)
    assert cj.returncode == 1 and json.loads(cj.stdout) == {
        "ok": False, "config": str(lb.conf_path), "error": why}, cj.stdout
    r = ctl(lb, "reload", check=False)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.strip() == "", r.stdout
    assert why in r.stderr, (why, r.stderr)
    return r.stderr


def ehlo_size(reply):
    """The SIZE an EHLO reply advertises (None: no SIZE)."""
    for line in reply.lines:
        m = re.fullmatch(r"SIZE(?: (\d+))?", line.strip(), re.I)
        if m:
            return int(m.group(1)) if m.group(1) else 0
    return None


def rcpt_replies(c, addrs):
    """RCPT TO for each address, pipelined (RFC 2920); the replies."""
    c.send("".join(f"RCPT TO:<{a}>\r\n" for a in addrs))
    return [c.reply() for _ in addrs]


@pytest.mark.pmds("tap")
def test_reload_good_and_bad(ctl_lab):
    """config check passes the running file; a bad file is refused by
    config check and by reload with file:line:reason, and the daemon goes on;
    a good one applies the log level and the [smtp] limits at once (no
    restart needed for them); sessions running meanwhile are not
    dropped."""
    w = ctl_lab()
    lb = w.lab
    good = lb.conf_path.read_text()
    results = {}

    def load():
        results.update(ml.send_many(lb.ns, items(400, "r"), sessions=4,
                                    per_conn=100))
    t = threading.Thread(target=load)
    t.start()
    assert ctl(lb, "config", "check", str(lb.conf_path)).stdout == \
        f"{lb.conf_path}: ok\n"
    assert ctlj(lb, "config", "check", str(lb.conf_path)) == {
        "ok": True, "config": str(lb.conf_path)}
    # a file name JSON cannot carry (not UTF-8): checked, said plainly
    odd = lb.conf_path.parent / os.fsdecode(b"odd\xffname.conf")
    odd.write_text(good)
    r = subprocess.run([str(ctl_binary()), "config", "check", odd],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == bytes(odd) + b": ok\n", r
    r = subprocess.run([str(ctl_binary()), "config", "check", "--json", odd],
                       capture_output=True, timeout=60)
    assert r.returncode == 1 and r.stdout == b"" and \
        b"ok (and no JSON for it: not UTF-8)" in r.stderr, r
    assert ctl(lb, "config", "check", "--json", "/nonexistent.conf",
               check=False).returncode == 1
    bad = reload_refused(lb, good + "\n[smtp]\nmax_recipients = lots\n")
    n = len(good.splitlines()) + 3
    assert f"{lb.conf_path}:{n}: [smtp] max_recipients" in bad, bad
    assert ctlj(lb, "status")["ok"]
    text = labmod.set_ini(good, "log", "level", "debug")
    text = labmod.set_ini(text, "smtp", "max_recipients", "200")
    lb.conf_path.write_text(text)
    r = ctlj(lb, "reload")
    assert "log.level" in r["applied"] and "smtp" in r["applied"], r
    assert r["restart_needed"] == [], r
    assert ctlj(lb, "log", "level")["level"] == "debug"
    t.join(120)
    assert len([k for k, v in results.items() if v[1] == 250]) == 400, \
        {k: v for k, v in results.items() if v[1] != 250}
    assert ctlj(lb, "stats")["total"]["smtp"]["messages_queued"] == 400
    lb.conf_path.write_text(good)
    assert "log.level" in ctlj(lb, "reload")["applied"]


@pytest.mark.pmds("tap")
def test_reload_limits_under_load(ctl_lab):
    """[smtp] max_message_size 200,000 -> 100,000 and max_recipients
    200 -> 100, reloaded while 16 sessions send 800 messages: every
    message gets 250 (no session dropped). A session opened before the
    reload keeps its limits (SIZE 200000 in EHLO, a 150 KB message to 150
    recipients taken); a new one sees SIZE 100000, gets 552 5.3.4 for the
    same message (at MAIL with SIZE=, or at the end of DATA without) and
    452 4.5.3 for the 101st recipient."""
    w = ctl_lab(extra={"smtp": {"max_message_size": 200000,
                                "max_recipients": 200}})
    lb = w.lab
    big = ml.message("big0", to="bob@dpmail.test", size=150000)
    many = [f"bob+{i}@dpmail.test" for i in range(150)]
    old = sc.Conn(lb.ns, ml.DAEMON_IP, 25, timeout=30)
    try:
        e = old.ehlo()
        assert e.code == 250 and ehlo_size(e) == 200000, e

        # 16 sessions of 50 messages each. Each parks (connection open)
        # after its 10th message until `go`, then after its 30th until
        # `done`: `go` is set just before the reload and `done` after it
        # returns, so the 16 sessions send while the reload runs and all
        # of them span it, however fast the machine is.
        n, sessions = 800, 16
        results = {}
        go, done = threading.Event(), threading.Event()

        def load():
            results.update(ml.send_many(lb.ns, items(n, "L"),
                                        sessions=sessions, per_conn=50,
                                        holds=((10, go), (30, done))))
        t = threading.Thread(target=load)
        t.start()
        try:
            sl.wait_for(lambda: ctlj(lb, "stats")["total"]["smtp"][
                        "messages_queued"] >= 10 * sessions, 60,
                        what="the first 10 messages of each session")
            # parked: the 16 load sessions and `old`, established
            est = ctlj(lb, "stats")["total"]["tcp_states"]["established"]
            assert est >= sessions + 1, est
            go.set()
            r = reload_ok(lb, conf_with(lb.conf_path.read_text(),
                                        ("smtp", "max_message_size",
                                         "100000"),
                                        ("smtp", "max_recipients", "100")))
            during = ctlj(lb, "stats")["total"]["smtp"]["messages_queued"]
        finally:
            go.set()
            done.set()
        assert "smtp" in r["applied"] and r["restart_needed"] == [], r
        t.join(180)
        assert not t.is_alive()
        bad = {k: v for k, v in results.items() if v[1] != 250}
        assert len(results) == n and not bad, \
            f"{len(bad)} of {n} not taken: {list(bad.items())[:5]}"
        # the reload came while the load ran, not after it
        assert during <= 30 * sessions < n, \
            f"the load was over ({during}) at the reload"

        # the session from before the reload: its old limits
        e = old.ehlo()
        assert e.code == 250 and ehlo_size(e) == 200000, e
        assert old.cmd(f"MAIL FROM:<{SENDER}> SIZE={len(big)}").code == 250
        rr = rcpt_replies(old, many)
        assert all(x.code == 250 for x in rr), [x for x in rr
                                                if x.code != 250][:3]
        fin = old.data(big)
        assert fin.code == 250 and fin.qid, fin
        assert old.cmd("QUIT").code == 221
    finally:
        old.close()

    # new sessions: the new limits
    with sc.Conn(lb.ns, ml.DAEMON_IP, 25, timeout=30) as c:
        e = c.ehlo()
        assert e.code == 250 and ehlo_size(e) == 100000, e
        r = c.cmd(f"MAIL FROM:<{SENDER}> SIZE={len(big)}")
        assert r.code == 552 and "5.3.4" in r.text, r
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        assert c.cmd("RCPT TO:<bob@dpmail.test>").code == 250
        fin = c.data(big)
        assert fin.code == 552 and "5.3.4" in fin.text, fin
        assert c.cmd("RSET").code == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        rr = rcpt_replies(c, many[:101])
        assert all(x.code == 250 for x in rr[:100]), [
            x for x in rr[:100] if x.code != 250][:3]
        assert rr[100].code == 452 and "4.5.3" in rr[100].text, rr[100]
        fin = c.data(ml.message("hundred", to="bob@dpmail.test"))
        assert fin.code == 250, fin     # the 100 it took
    s = ctlj(lb, "stats")["total"]["smtp"]
    assert s["messages_queued"] == n + 2, s
    print(f"\nreload under load: {during} of {n} messages accepted when "
          f"the reload returned; all {n} got 250")


@pytest.mark.pmds("tap")
def test_reload_routing_tables(ctl_lab):
    """Users, aliases, local domains, trusted networks, the transport
    map and the relay host reloaded: before, dave, team@, erin@new.test
    and z@far.test (the client is not trusted) are refused and t1.test
    goes to sink A; after (bob removed, dave and erin@new.test added,
    team -> carol, dave; new.test local; the client trusted; t1.test and
    the relay host -> sink B), bob gets 550 5.1.1, the new addresses land
    in the right Maildirs (erin's in new.test's, not relayed), and
    t1.test and far.test mail goes to sink B."""
    sink_a, sink_b = ml.SINK_IPS[0], ml.SINK_IPS[1]
    w = ctl_lab(trusted_networks="", relay_domains="t1.test",
                aliases={"postmaster": "alice"},
                transport={"t1.test": f"[{sink_a}]:{SINK_PORT}"})
    lb = w.lab
    sa = w.minisink(sink_a, port=SINK_PORT)
    sb = w.minisink(sink_b, port=SINK_PORT)

    def rcpt(addr):
        with sc.Conn(lb.ns, ml.DAEMON_IP, 25, timeout=30) as c:
            c.ehlo()
            assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
            return c.cmd(f"RCPT TO:<{addr}>")

    for a in ("dave@dpmail.test", "team@dpmail.test"):
        r = rcpt(a)
        assert r.code == 550 and "5.1.1" in r.text, (a, r)
    for a in ("erin@new.test", "z@far.test"):
        r = rcpt(a)
        assert r.code // 100 == 5 and "5.7.1" in r.text, (a, r)
    assert rcpt("bob@dpmail.test").code == 250
    d0 = ml.message("t1a", to="x@t1.test")
    q0 = ml.send(w, ["x@t1.test"], d0)
    m = sa.wait_count(1, 30)[0]
    assert m["rcpts"] == ["x@t1.test"] and ml.received_qid(m["data"]) == q0

    (w.conf_dir / "users").write_text("alice\ncarol\ndave\nerin@new.test\n")
    (w.conf_dir / "aliases").write_text("postmaster: alice\n"
                                        "team: carol, dave\n")
    (w.conf_dir / "transport").write_text(
        f"t1.test [{sink_b}]:{SINK_PORT}\n")
    r = reload_ok(lb, conf_with(lb.conf_path.read_text(),
                                ("policy", "local_domains",
                                 "dpmail.test, new.test"),
                                ("policy", "trusted_networks",
                                 f"{ml.KERNEL_IP}/32"),
                                ("mta", "relayhost",
                                 f"[{sink_b}]:{SINK_PORT}")))
    assert "policy" in r["applied"] and "routing" in r["applied"], r
    assert r["restart_needed"] == [], r

    r = rcpt("bob@dpmail.test")
    assert r.code == 550 and "5.1.1" in r.text, r
    d1 = ml.message("dave1", to="dave@dpmail.test")
    q1 = ml.send(w, ["dave@dpmail.test"], d1)
    d2 = ml.message("team2", to="team@dpmail.test")
    q2 = ml.send(w, ["team@dpmail.test"], d2)
    d3 = ml.message("erin3", to="erin@new.test")
    q3 = ml.send(w, ["erin@new.test"], d3)
    d4 = ml.message("t1b", to="y@t1.test")
    q4 = ml.send(w, ["y@t1.test"], d4)
    d5 = ml.message("far5", to="z@far.test")
    q5 = ml.send(w, ["z@far.test"], d5)

    def landed(md, n, what):
        return {ml.received_qid(ml.split_delivered(x)[2]): x
                for x in ml.wait_files(md, n, 30, what)}
    assert set(landed(ml.mailbox_path(w.mail_dir, "dave"), 2,
                      "dave: his own and team's")) == {q1, q2}
    assert set(landed(ml.mailbox_path(w.mail_dir, "carol"), 1,
                      "carol: team's")) == {q2}
    got = landed(ml.mailbox_path(w.mail_dir, "erin", "new.test"), 1,
                 "erin@new.test")
    assert set(got) == {q3}
    assert sc.strip_received(ml.split_delivered(got[q3])[2]) == d3
    got = {m["rcpts"][0]: m for m in sb.wait_count(2, 30)}
    assert set(got) == {"y@t1.test", "z@far.test"}, list(got)
    for rc, q, d in (("y@t1.test", q4, d4), ("z@far.test", q5, d5)):
        assert ml.received_qid(got[rc]["data"]) == q
        assert sc.strip_received(got[rc]["data"]) == d
    time.sleep(1)
    assert sa.count() == 1 and sb.count() == 2
    assert ml.maildir_count(ml.mailbox_path(w.mail_dir, "bob")) == 0


@pytest.mark.pmds("tap")
def test_reload_bad_routing_refused(ctl_lab):
    """A reload whose tables do not load (an aliases line without a
    colon, a missing aliases file, a users file with a bad name) is
    refused with the file, line and reason; nothing of it applies (not
    the tables, not the [smtp] limit changed with them), and the old
    routing goes on working."""
    w = ctl_lab(aliases={"postmaster": "alice", "team": "bob"})
    lb = w.lab
    good = lb.conf_path.read_text()
    af = w.conf_dir / "aliases"
    old_aliases = af.read_text()
    with sc.Conn(lb.ns, ml.DAEMON_IP, 25, timeout=30) as c:
        size0 = ehlo_size(c.ehlo())
    assert size0 and size0 != 100000

    af.write_text("postmaster: alice\nsales carol\nteam: bob, carol\n")
    err = reload_refused(lb, conf_with(good, ("smtp", "max_message_size",
                                              "100000")))
    assert f"{af}:2:" in err, err
    af.write_text(old_aliases)
    gone = w.conf_dir / "no-such-aliases"
    err = reload_refused(lb, conf_with(good, ("mta", "aliases_file",
                                              str(gone))))
    assert str(gone) in err and "No such file" in err, err
    uf = w.conf_dir / "users"
    uf.write_text("alice\nbob\nbad user\ncarol\n")
    err = reload_refused(lb, good)
    assert f"{uf}:3:" in err, err
    uf.write_text("alice\nbob\ncarol\n")
    assert "reload refused" in lb.log_text()

    # as before: team -> bob only, SIZE unchanged, sales unknown
    with sc.Conn(lb.ns, ml.DAEMON_IP, 25, timeout=30) as c:
        assert ehlo_size(c.ehlo()) == size0
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        r = c.cmd("RCPT TO:<sales@dpmail.test>")
        assert r.code == 550 and "5.1.1" in r.text, r
    d = ml.message("team0", to="team@dpmail.test")
    q = ml.send(w, ["team@dpmail.test"], d)
    (raw,) = ml.wait_files(ml.mailbox_path(w.mail_dir, "bob"), 1, 30, "bob")
    assert ml.received_qid(ml.split_delivered(raw)[2]) == q
    time.sleep(0.5)
    assert ml.maildir_count(ml.mailbox_path(w.mail_dir, "carol")) == 0
    # and a good file still reloads afterwards
    lb.conf_path.write_text(good)
    assert ctlj(lb, "reload")["ok"]


@pytest.mark.pmds("tap")
def test_reload_reply_and_queue_settings(ctl_lab):
    """reload --json: exactly ok, config, applied, restart_needed; an
    unchanged file applies no limits, queue settings or log level and
    needs no restart; [mta] hold = yes applies live (new mail stays in
    the queue, "queue" applied) and hold = no delivers it; a changed
    listener and [tcp] are named as needing a restart; the table output
    says the same."""
    w = ctl_lab()
    lb = w.lab
    good = lb.conf_path.read_text()
    r = reload_ok(lb, good)
    assert set(r) == {"ok", "config", "applied", "restart_needed"}, r
    assert r["ok"] is True and r["config"] == str(lb.conf_path)
    assert isinstance(r["applied"], list) and isinstance(
        r["restart_needed"], list), r
    assert not {"log.level", "smtp", "queue"} & set(r["applied"]), r
    assert r["restart_needed"] == [], r

    held = conf_with(good, ("mta", "hold", "yes"))
    r = reload_ok(lb, held)
    assert "queue" in r["applied"] and r["restart_needed"] == [], r
    assert "smtp" not in r["applied"] and "log.level" not in r["applied"]
    qs = [ml.send(w, ["bob@dpmail.test"], ml.message(f"h{i}",
                                                     to="bob@dpmail.test"))
          for i in range(3)]
    time.sleep(2)
    assert ml.maildir_count(ml.mailbox_path(w.mail_dir, "bob")) == 0
    assert ctlj(lb, "stats")["qmgr"]["delivered_local"] == 0
    r = reload_ok(lb, good)
    assert "queue" in r["applied"], r
    raws = ml.wait_files(ml.mailbox_path(w.mail_dir, "bob"), 3, 30,
                         "the held messages after hold = no")
    assert {ml.received_qid(ml.split_delivered(x)[2]) for x in raws} == \
        set(qs)

    # what needs a restart, named; the live part still applies
    r = reload_ok(lb, conf_with(good, ("smtp", "listen", "25, 2525"),
                                ("tcp", "msl_ms", "2000"),
                                ("smtp", "max_errors", "7")))
    assert "net/stack/tcp" in r["restart_needed"], r
    assert any(x.startswith("smtp") for x in r["restart_needed"]), r
    assert "smtp" in r["applied"], r
    lb.conf_path.write_text(conf_with(good, ("smtp", "listen", "25, 2525"),
                                      ("tcp", "msl_ms", "2000"),
                                      ("smtp", "max_errors", "8")))
    human = ctl(lb, "reload").stdout
    lines = human.splitlines()
    assert lines[0] == f"reloaded {lb.conf_path}", human
    assert any(l.startswith("applied:") and " smtp" in l for l in lines), \
        human
    assert any(l.startswith("needs a restart:") and "net/stack/tcp" in l
               for l in lines), human
    # the listener did not move: 25 answers, 2525 does not
    with sc.Conn(lb.ns, ml.DAEMON_IP, 25, timeout=30) as c:
        assert c.greeting.code == 220
    with pytest.raises(OSError):
        sc.Conn(lb.ns, ml.DAEMON_IP, 2525, timeout=5)
    lb.conf_path.write_text(good)
    r = ctlj(lb, "reload")
    assert r["restart_needed"] == [], r


@pytest.mark.pmds("tap")
def test_shutdown_drain_under_load(ctl_lab):
    """shutdown --drain during a load run: new connections get 421, the
    sessions in flight finish, the exit code is 0, and every message that
    got 250 is in the spool."""
    w = ctl_lab(hold="yes")          # keep every message in the spool
    lb = w.lab
    results = {}

    def load():
        results.update(ml.send_many(lb.ns, items(3000, "d", size=300),
                                    sessions=8, per_conn=50, timeout=30))
    t = threading.Thread(target=load)
    t.start()
    sl.wait_for(lambda: ctlj(lb, "stats")["total"]["smtp"]["messages_queued"]
                >= 300, 60, what="300 messages accepted")
    r = ctl(lb, "shutdown", "--drain", "20", timeout=90)
    assert "stopped" in r.stdout
    lb.proc.wait(30)
    assert lb.proc.returncode == 0, lb.log_tail(40)
    t.join(60)
    acked = {v[0] for v in results.values() if v[1] == 250}
    assert len(acked) >= 300
    msgs, dups, _ = sl.spool(lb, body=False)
    missing = acked - set(msgs)
    assert not missing, f"{len(missing)} acked messages not in the spool"
    assert not dups
    assert "draining" in lb.log_text() and "dpmailctl shutdown" in \
        lb.log_text()
    print(f"\nshutdown --drain: {len(acked)} acked of 3000, all in the "
          f"spool ({len(msgs)} messages there)")


@pytest.mark.pmds("tap")
def test_bad_requests_and_socket(ctl_lab, tmp_path):
    """Garbage, a 1 MiB line, unknown verbs and wrong types get error
    replies and the daemon goes on; the socket is 0600; no daemon means
    exit code 3; a second daemon on the same socket is refused."""
    w = ctl_lab()
    lb = w.lab
    path = lb.ctl_socket
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    reps = raw_request(path, b"hello\n{\"verb\": 5}\n[1,2]\n"
                       b"{\"verb\":\"frobnicate\"}\n"
                       b"{\"verb\":\"stats\",\"worker\":\"x\"}\n"
                       b"{\"verb\":\"queue.list\",\"ids\":\"abc\"}\n"
                       b"{\"verb\":\"queue.list\",\"state\":\"lost\"}\n"
                       b"{\"verb\":\"shutdown\",\"drain\":-1}\n"
                       b"{\"verb\":\"log.level\",\"level\":[]}\n"
                       b"{\"verb\":\"ping\"}\n")
    assert len(reps) == 10, reps
    assert all(r["ok"] is False and r["error"] for r in reps[:9]), reps
    assert "bad JSON" in reps[0]["error"]
    assert "unknown verb" in reps[3]["error"]
    assert "whole number" in reps[4]["error"]
    assert "array of strings" in reps[5]["error"]
    assert reps[9] == {"ok": True, "pong": True}
    big = raw_request(path, b"{\"verb\":\"" + b"x" * (1 << 20) + b"\"}\n")
    assert big and big[0]["ok"] is False and "too long" in big[0]["error"]
    assert ctlj(lb, "status")["ok"]
    # several clients at once
    socks = []
    for _ in range(5):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        socks.append(s)
    assert ctlj(lb, "stats")["ok"]
    for s in socks:
        s.close()
    # a second daemon on the same socket stops before EAL
    r = subprocess.run([str(labmod.daemon_binary()), "-c",
                        str(lb.conf_path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "another dpmaild" in r.stderr, r.stderr
    assert lb.alive()
    # no daemon there / usage
    r = subprocess.run([str(ctl_binary()), "status", "-s",
                        str(tmp_path / "none.sock")], capture_output=True,
                       text=True)
    assert r.returncode == 3 and "not running" in r.stderr
    r = subprocess.run([str(ctl_binary()), "queue", "frob", "-s", path],
                       capture_output=True, text=True)
    assert r.returncode == 2
    for verb in (["status"], ["stats"], ["queue", "list"], ["domain"],
                 ["log", "level"], ["reload"], ["shutdown"]):
        r = subprocess.run([str(ctl_binary()), *verb, "--help"],
                           capture_output=True, text=True)
        assert r.returncode == 0 and "Usage" in r.stdout, (verb, r)
    assert lb.alive()


@pytest.mark.pmds("tap")
def test_json_log_lines(ctl_lab):
    """[log] format = json: every log line is one JSON object (time,
    level, msg; component and qid where the line names them), the
    queued and delivery lines among them."""
    w = ctl_lab(extra={"log": {"format": "json"}})
    lb = w.lab
    qid = ml.send(w, ["bob@dpmail.test"], ml.message("j0",
                                                     to="bob@dpmail.test"))
    sl.wait_for(lambda: ctlj(lb, "stats")["qmgr"]["delivered_local"] == 1, 30,
                what="the delivery")
    objs = []
    for line in lb.log_text().splitlines():
        if line.startswith("{"):
            objs.append(json.loads(line))
    assert any("dpmaild: ready" in o["msg"] for o in objs)
    assert any(qid in o["msg"] for o in objs), [o["msg"] for o in objs]
    # "component: [QID: ]text" lines carry those as fields besides
    assert all({"time", "level", "msg"} <= set(o) <=
               {"time", "level", "component", "qid", "msg"}
               for o in objs), [o for o in objs if set(o) - {
                   "time", "level", "component", "qid", "msg"}]
    assert any(o.get("qid") == qid and o["msg"].startswith(
        f"{o['component']}: {qid}: ") for o in objs), objs
    # (DPDK's own EAL/PMD messages and the counter tables stay plain)
    assert len(objs) >= 5
