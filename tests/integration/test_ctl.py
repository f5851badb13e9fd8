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
    config; returns the MtaWorld (.lab is the Lab)."""
    made = []

    def make(extra=None, **kw):
        conf = ml.mta_config(tmp_path / "conf", extra=extra, **kw)
        lb = labmod.Lab(pmd, tmp_path / "daemon", name=request.node.name,
                        config=conf)
        world = ml.MtaWorld(lb, tmp_path / "world")
        made.append(world)
        try:
            lb.start()
        except labmod.LabError as e:
            pytest.fail(f"lab start ({pmd}): {e}", pytrace=False)
        world.mail_dir = Path(conf["mailbox"]["dir"])
        sl.wait_reachable(lb)
        return world

    yield make
    problems = []
    for w in made:
        w.close()
        problems += w.lab.close()
        if problems:
            print(f"\n--- dpmaild log tail ({w.lab.ns}) ---\n"
                  f"{w.lab.log_tail(80)}")
    if problems:
        pytest.fail("teardown: " + "; ".join(problems), pytrace=False)


def items(n, tag, to="bob@dpmail.test", sender=SENDER, size=400):
    return [(f"{tag}{i}", sender, [to], ml.message(f"{tag}{i}", sender=sender,
                                                   to=to, size=size))
            for i in range(n)]


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


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

    s = wait(lambda: (lambda j: j if j["qmgr"]["delivered_local"] >= 1000
                      else None)(ctlj(lb, "stats")), 60,
             "1,000 local deliveries")
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
    wait(lambda: ctlj(lb, "queue", "list", "--state", "deferred")["matched"]
         == 5, 30, "5 deferred messages")
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
    wait(lambda: ctlj(lb, "queue", "list")["matched"] == 0, 30,
         "an empty queue")

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
    wait(lambda: ctlj(lb, "queue", "list", "--state", "deferred")["matched"]
         == 2, 30, "2 deferred")
    assert ctlj(lb, "queue", "delete", qd)["matched"] == 1
    assert ctlj(lb, "queue", "bounce", qx)["matched"] == 1
    raws = ml.wait_files(w.mail_dir / "alice", 1, 30,
                         "the DSN in alice's Maildir")
    dsn = ml.parse_dsn(raws[0])
    assert dsn["recipients"][0]["final-recipient"].lower().endswith(
        "bnc@c.test"), dsn["recipients"]
    assert dsn["recipients"][0]["action"].lower() == "failed"
    wait(lambda: ctlj(lb, "queue", "list")["matched"] == 0, 30, "empty")
    sink.up()
    time.sleep(1)
    assert sink.count() == 6        # the deleted one never went out


@pytest.mark.pmds("tap")
def test_reload_good_and_bad(ctl_lab):
    """A bad file is refused with file:line:reason and the daemon goes on;
    a good one applies the log level at once and lists what needs a
    restart; sessions running meanwhile are not dropped."""
    w = ctl_lab()
    lb = w.lab
    good = lb.conf_path.read_text()
    results = {}

    def load():
        results.update(ml.send_many(lb.ns, items(400, "r"), sessions=4,
                                    per_conn=100))
    t = threading.Thread(target=load)
    t.start()
    lb.conf_path.write_text(good + "\n[smtp]\nmax_recipients = lots\n")
    bad = ctl(lb, "reload", check=False)
    assert bad.returncode == 1, bad
    n = len(good.splitlines()) + 3
    assert f"{lb.conf_path}:{n}: [smtp] max_recipients" in bad.stderr, \
        bad.stderr
    assert ctlj(lb, "status")["ok"]
    text = labmod.set_ini(good, "log", "level", "debug")
    text = labmod.set_ini(text, "smtp", "max_recipients", "200")
    lb.conf_path.write_text(text)
    r = ctlj(lb, "reload")
    assert "log.level" in r["applied"]
    assert "smtp" in r["restart_needed"]
    assert ctlj(lb, "log", "level")["level"] == "debug"
    t.join(120)
    assert len([k for k, v in results.items() if v[1] == 250]) == 400, \
        {k: v for k, v in results.items() if v[1] != 250}
    assert ctlj(lb, "stats")["total"]["smtp"]["messages_queued"] == 400
    lb.conf_path.write_text(good)
    assert "log.level" in ctlj(lb, "reload")["applied"]


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
    wait(lambda: ctlj(lb, "stats")["total"]["smtp"]["messages_queued"]
         >= 300, 60, "300 messages accepted")
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
    level, msg), the queued and delivery lines among them."""
    w = ctl_lab(extra={"log": {"format": "json"}})
    lb = w.lab
    qid = ml.send(w, ["bob@dpmail.test"], ml.message("j0",
                                                     to="bob@dpmail.test"))
    wait(lambda: ctlj(lb, "stats")["qmgr"]["delivered_local"] == 1, 30,
         "the delivery")
    objs = []
    for line in lb.log_text().splitlines():
        if line.startswith("{"):
            objs.append(json.loads(line))
    assert any("dpmaild: ready" in o["msg"] for o in objs)
    assert any(qid in o["msg"] for o in objs), [o["msg"] for o in objs]
    assert all(set(o) == {"time", "level", "msg"} for o in objs)
    # (DPDK's own EAL/PMD messages and the counter tables stay plain)
    assert len(objs) >= 5
