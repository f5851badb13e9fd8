"""The MTA end to end: dpmaild relays over its userspace stack to
downstream servers in the lab namespace, found through DNS (dnsmasq on
198.18.0.1), and delivers local mail into Maildirs.

The world (mtalab.py): extra kernel-side addresses 198.18.0.10-.15, each
downstream on its own address (reached by ARP through the tap); our
byte-exact sink (minisink.py) with per-recipient replies and down/up; a
real Postfix as the downstream MTA; bounces read from the local sender's
Maildir and checked as RFC 3464 reports with Python's `email`.

The zone (ZONE below):

  a.test       MX 10 mx1.a.test 198.18.0.10, MX 20 mx2.a.test 198.18.0.11
  b.test       MX 10 mx.b.test 198.18.0.12
  c.test       MX 10 mx.c.test 198.18.0.13
  pf.test      MX 10 mx.pf.test 198.18.0.14  (Postfix)
  ahost.test   no MX, A 198.18.0.12           (implicit MX, RFC 5321 5.1)
  rst.test     MX 10 198.18.0.15 (address up, nothing listens: RST),
               MX 20 198.18.0.11
  noarp.test   MX 10 198.18.0.99 (no one answers ARP), MX 20 198.18.0.11
  nullmx.test  MX 0 . (RFC 7505)
  nx.test      NXDOMAIN

The first tests check the lab pieces alone (no daemon); the rest need the
MTA wired into dpmaild. Local user alice@dpmail.test is the sender
throughout, so bounces land in var/mail/alice/.
"""

import os
import re
import threading
import time

import pytest

import lab as labmod
import mtalab as ml
import smtpclient as sc
import smtplab as sl

pytestmark = [pytest.mark.netns]

SENDER = "alice@dpmail.test"
MX1, MX2, MXB, MXC, MXPF, RSTIP = ml.SINK_IPS

ZONE = dict(
    mx={"a.test": [(10, "mx1.a.test"), (20, "mx2.a.test")],
        "b.test": [(10, "mx.b.test")],
        "c.test": [(10, "mx.c.test")],
        "pf.test": [(10, "mx.pf.test")],
        "rst.test": [(10, "mx1.rst.test"), (20, "mx2.rst.test")],
        "noarp.test": [(10, "mx1.noarp.test"), (20, "mx2.noarp.test")]},
    a={"mx1.a.test": MX1, "mx2.a.test": MX2, "mx.b.test": MXB,
       "mx.c.test": MXC, "mx.pf.test": MXPF, "ahost.test": MXB,
       "mx1.rst.test": RSTIP, "mx2.rst.test": MX2,
       "mx1.noarp.test": ml.NO_ARP_IP, "mx2.noarp.test": MX2},
    null_mx=["nullmx.test"],
    nxdomain=["nx.test"],
)


# ---------------------------------------------------------------- fixtures

LAB_TOOLS = ("ip", "ss", "dnsmasq", "swaks", "postfix", "smtp-sink",
             "smtp-source")


@pytest.fixture
def bare_ns():
    """A namespace with 198.18.0.1/24 on a veth end and no daemon."""
    import shutil
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces)", pytrace=False)
    missing = [t for t in LAB_TOOLS if not shutil.which(t)]
    if missing:
        pytest.fail(f"missing tools {missing} (scripts/install-deps)",
                    pytrace=False)
    b = ml.BareNs()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def mta_lab(request, pmd, tmp_path, lab_preflight):
    """A factory: mta_lab(**mta_config kwargs) starts dpmaild with the MTA
    settings (mtalab.mta_config), the extra addresses and dnsmasq with
    ZONE, and returns the MtaWorld (its .lab is the Lab). Torn down like
    conftest's `lab` (exit 0 within the limit, no sanitizer report)."""
    made = []

    def make(**kw):
        conf = ml.mta_config(tmp_path / "conf", **kw)
        lb = labmod.Lab(pmd, tmp_path / "daemon", name=request.node.name,
                        config=conf)
        world = ml.start_world(lb, tmp_path / "world", conf, made)
        world.add_addresses([ip for ip in ml.SINK_IPS])
        world.start_dns(**ZONE)
        sl.wait_reachable(lb)
        return world

    yield make
    labmod.close_labs(request, made)


# ---------------------------------------------------------------- helpers

def mbox(w, user, domain=None):
    return ml.mailbox_path(w.mail_dir, user, domain)


def check_relayed(msg, qid, data, sender=SENDER):
    """What a sink got is our Received: (naming the queue ID and our
    host) on top of exactly the client's data."""
    got = msg["data"]
    assert got.startswith(b"Received: "), got[:200]
    assert ml.received_qid(got) == qid, (qid, got[:300])
    assert b"by mx.dpmail.test" in got[:400], got[:400]
    assert sc.strip_received(got) == data, \
        f"{qid}: relayed data differs from what the client sent"
    assert msg["mail_from"] == sender, msg["mail_from"]


def check_spool_bytes(w, qid, relayed):
    """Where the spool still holds the message, the relayed bytes are the
    spooled bytes exactly."""
    try:
        msgs, _, _ = sl.spool(w.lab)
    except sc.SMTPError:
        return
    if qid in msgs and msgs[qid].get("body_bytes") is not None:
        assert msgs[qid]["body_bytes"] == relayed, \
            f"{qid}: relayed bytes are not the spooled bytes"


def bounces(w, user="alice", n=1, timeout=60):
    """The first `n` messages in a local user's Maildir, as
    (return_path, delivered_to, parsed DSN, raw spooled part)."""
    out = []
    for raw in ml.wait_files(mbox(w, user), n, timeout, f"bounce to {user}"):
        rp, dt, spooled = ml.split_delivered(raw)
        out.append((rp, dt, ml.parse_dsn(spooled), spooled))
    return out


def rcpt_block(dsn, addr):
    for r in dsn["recipients"]:
        if r["final-recipient-addr"].lower() == addr.lower():
            return r
    raise AssertionError(f"no recipient block for {addr}: "
                         f"{dsn['recipients']}")


# ---------------------------------------------------------------- the lab
# alone: runs without the daemon's MTA

def test_lab_dnsmasq_records(bare_ns, tmp_path):
    """dnsmasq answers MX (two preferences), A, a null MX, NXDOMAIN for
    the nx.test tree and any unknown .test name, NODATA for an MX query on
    a host with only an A record."""
    ml.add_addresses(bare_ns, ml.SINK_IPS)
    d = ml.Dns(bare_ns, tmp_path / "dns", **ZONE).start()
    try:
        q = lambda n, t: ml.dns_query(bare_ns.ns, n, t)   # noqa: E731
        r = q("a.test", "MX")
        assert r["rcode"] == "NOERROR"
        assert sorted(v for _, v in r["answers"]) == \
            [(10, "mx1.a.test"), (20, "mx2.a.test")]
        for host, ip in ZONE["a"].items():
            assert q(host, "A")["answers"] == [("A", ip)], host
        assert q("nullmx.test", "MX")["answers"] == [("MX", (0, ""))]
        assert q("nx.test", "MX")["rcode"] == "NXDOMAIN"
        assert q("deep.nx.test", "A")["rcode"] == "NXDOMAIN"
        assert q("nothing-here.test", "MX")["rcode"] == "NXDOMAIN"
        r = q("ahost.test", "MX")
        assert r["rcode"] == "NOERROR" and r["answers"] == [], r
    finally:
        d.close()


def test_lab_sinks_and_postfix(bare_ns, tmp_path):
    """minisink: byte-exact data and envelope, 550 for one recipient and
    250 for another, BDAT, down (RST) and up again; smtp-sink counts;
    a private Postfix delivers swaks mail into its Maildir and relays to
    minisink, and its bounce for the 550 recipient parses as RFC 3464."""
    r = bare_ns
    ml.add_addresses(r, ml.SINK_IPS)
    things = []
    try:
        s = ml.MiniSink(r.ns, MX1)
        things.append(s)
        s.rcpt_replies["bad@a.test"] = "550 5.1.1 <bad@a.test>: no such user"
        data = ml.message("lab1", to="good@a.test")
        f = tmp_path / "m.eml"
        f.write_bytes(sc.dot_stuff(data) + b".")
        res = r.run(["swaks", "--server", MX1, "--from", SENDER, "--to",
                     "good@a.test,bad@a.test", "-ndf", "--data", f"@{f}",
                     "--pipeline"], check=False)
        assert res.returncode == 0, res.stdout[-2000:]
        m = s.wait_count(1, 10)[0]
        assert m["data"] == data and m["rcpts"] == ["good@a.test"] and \
            m["mail_from"] == SENDER, m
        # BDAT
        c = sc.Conn(r.ns, MX1, 25)
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@y.test>").code == 250
        assert c.cmd("RCPT TO:<good@a.test>").code == 250
        c.send(b"BDAT 5\r\nhello")
        assert c.reply().code == 250
        c.send(b"BDAT 3 LAST\r\n.x\n")
        assert c.reply().code == 250
        c.close()
        assert s.wait_count(2, 5)[1]["data"] == b"hello.x\n"
        # down: RST; up: taken again
        s.down()
        res = r.run(["swaks", "--server", MX1, "--to", "good@a.test",
                     "--quit-after", "CONNECT"], check=False)
        assert res.returncode != 0 and "refused" in res.stderr.lower(), \
            res.stdout
        s.up()
        res = r.run(["swaks", "--server", MX1, "--to", "good@a.test",
                     "-ndf", "--data", f"@{f}"], check=False)
        assert res.returncode == 0 and s.wait_count(3, 5)

        # smtp-sink counts what smtp-source sends
        ss = ml.SmtpSink(r, MX2, 2525)
        things.append(ss)
        res = r.run(["smtp-source", "-s", "4", "-m", "40", "-l", "1024",
                     "-f", SENDER, "-t", "x@b.test", f"{MX2}:2525"],
                    check=False)
        assert res.returncode == 0, res.stderr
        ss.wait_count(40, 10)

        # Postfix downstream: virtual Maildir delivery, relay to minisink
        tf = tmp_path / "pf-transport"
        tf.write_text(f"a.test smtp:[{MX1}]:25\n")
        pf = ml.Postfix(r, tmp_path / "pf", MXPF,
                        users=["u1@pf.test", "u2@pf.test"],
                        main={"transport_maps": f"texthash:{tf}"}).start()
        things.append(pf)
        d1 = ml.message("pf1", sender="u1@pf.test", to="u2@pf.test")
        f.write_bytes(sc.dot_stuff(d1) + b".")
        res = r.run(["swaks", "--server", MXPF, "--from", "u1@pf.test",
                     "--to", "u2@pf.test", "-ndf", "--data", f"@{f}"],
                    check=False)
        assert res.returncode == 0, res.stdout[-1500:]
        pf.wait_delivered(1, 30, user="u2@pf.test")
        got = ml.maildir_messages(pf.maildir("u2@pf.test"))[0]
        assert got.endswith(d1.replace(b"\r\n", b"\n")), got[-300:]
        sl.wait_for(lambda: any(d["status"] == "sent" for d in
                                ml.deliveries(pf.log_text())), 10, 0.1,
                    "Postfix's status=sent log line")
        d2 = ml.message("pf2", sender="u1@pf.test", to="good@a.test")
        f.write_bytes(sc.dot_stuff(d2) + b".")
        res = r.run(["swaks", "--server", MXPF, "--from", "u1@pf.test",
                     "--to", "good@a.test,bad@a.test", "-ndf", "--data",
                     f"@{f}"], check=False)
        assert res.returncode == 0, res.stdout[-1500:]
        m = s.wait_count(4, 30)[3]
        assert m["data"].endswith(d2) and m["rcpts"] == ["good@a.test"]
        pf.wait_delivered(1, 30, user="u1@pf.test")
        raw = ml.maildir_messages(pf.maildir("u1@pf.test"))[0]
        dsn = ml.parse_dsn(raw)
        b = rcpt_block(dsn, "bad@a.test")
        assert b["action"] == "failed" and b["status"] == "5.1.1", b
        assert "550" in b.get("diagnostic-code", ""), b
    finally:
        for t in reversed(things):
            t.close()


# ---------------------------------------------------------------- routing

@pytest.mark.pmds("tap")
def test_mx_routing_several_domains(mta_lab):
    """Mail for a.test, b.test, c.test and ahost.test (no MX: its A
    record) reaches the right sink, byte-exact (our Received: on top of
    the client's data), one log line status=sent each."""
    w = mta_lab()
    sinks = {MX1: w.minisink(MX1), MXB: w.minisink(MXB),
             MXC: w.minisink(MXC)}
    want = {"x@a.test": MX1, "y@b.test": MXB, "z@c.test": MXC,
            "h@ahost.test": MXB}
    sent = {}
    for i, (rcpt, ip) in enumerate(want.items()):
        data = ml.message(f"route{i}", to=rcpt)
        sent[rcpt] = (ml.send(w, [rcpt], data), data)
    for ip, s in sinks.items():
        n = sum(1 for v in want.values() if v == ip)
        s.wait_count(n, 60)
    for rcpt, ip in want.items():
        qid, data = sent[rcpt]
        got = [m for m in sinks[ip].messages if m["rcpts"] == [rcpt]]
        assert len(got) == 1, (rcpt, [m["rcpts"] for m in
                                      sinks[ip].messages])
        check_relayed(got[0], qid, data)
        check_spool_bytes(w, qid, got[0]["data"])
    ml.wait_deliveries(w.lab, lambda d: sum(
        1 for x in d if x["status"] == "sent") >= len(want), 20,
        "status=sent lines")
    for rcpt, ip in want.items():
        qid = sent[rcpt][0]
        lines = [d for d in ml.deliveries(w.lab.log_text())
                 if d["qid"] == qid and d["to"] == rcpt]
        assert lines and lines[-1]["status"] == "sent", lines
        assert ip in (lines[-1]["relay"] or ""), lines[-1]
        assert (lines[-1]["dsn"] or "").startswith("2."), lines[-1]
    assert all(s.count() == len(s.messages) for s in sinks.values())


@pytest.mark.pmds("tap")
@pytest.mark.parametrize("first", ["rst", "noarp"])
def test_mx_fallback_second_mx(mta_lab, first):
    """The first MX is down (rst: its address is up, nothing listens,
    the connect gets a RST; noarp: no one answers ARP for it, the connect
    times out), the second MX (198.18.0.11) gets the message, the same
    queue run (no bounce, no wait for a retry of the whole message)."""
    w = mta_lab(connect_timeout_s=3, retry_first_s=60, retry_max_s=120)
    s2 = w.minisink(MX2)
    rcpt = f"user@{first}.test"
    data = ml.message(f"fb-{first}", to=rcpt)
    t0 = time.monotonic()
    qid = ml.send(w, [rcpt], data)
    m = s2.wait_count(1, 45)[0]
    took = time.monotonic() - t0
    check_relayed(m, qid, data)
    # retry_first_s is 60: a delivery before that came from the same run
    assert took < 45, took
    assert ml.maildir_count(mbox(w, "alice")) == 0, "a bounce was sent"
    print(f"\n{first}: second MX reached after {took:.1f} s")


@pytest.mark.pmds("tap")
def test_null_mx_and_nxdomain_bounce(mta_lab):
    """A domain with a null MX (RFC 7505) and a domain that does not
    exist bounce (5.x.x) to the local sender, without any connection."""
    w = mta_lab()
    sinks = [w.minisink(ip) for ip in (MX1, MX2, MXB, MXC)]
    q1 = ml.send(w, ["n@nullmx.test"],
                 ml.message("nullmx", to="n@nullmx.test"))
    q2 = ml.send(w, ["n@nx.test"], ml.message("nxd", to="n@nx.test"))
    got = bounces(w, n=2, timeout=60)
    by = {}
    for rp, dt, dsn, _ in got:
        assert rp == "", f"a bounce comes from <>, not <{rp}>"
        assert dt.lower() == SENDER
        for r in dsn["recipients"]:
            by[r["final-recipient-addr"].lower()] = r
    for a in ("n@nullmx.test", "n@nx.test"):
        assert a in by, by
        assert by[a]["action"] == "failed" and \
            by[a]["status"].startswith("5."), by[a]
    print(f"\nnull MX: {by['n@nullmx.test']['status']}, NXDOMAIN: "
          f"{by['n@nx.test']['status']} ({q1}, {q2})")
    assert all(s.sessions == 0 for s in sinks)


# ---------------------------------------------------------------- Postfix

@pytest.mark.pmds("tap")
def test_postfix_downstream_byte_identical(mta_lab):
    """A real Postfix takes the relayed message and delivers it to a
    Maildir: after Postfix's own headers (Return-Path, X-Original-To,
    Delivered-To, its Received:) comes our Received: and then exactly
    what the client sent (Postfix writes LF line ends in Maildir)."""
    w = mta_lab()
    pf = w.postfix(MXPF, users=["u1@pf.test", "u2@pf.test"])
    sent = []
    for i, size in enumerate((700, 20000, 300000)):
        rcpt = f"u{1 + i % 2}@pf.test"
        data = ml.message(f"pf{i}", to=rcpt, size=size)
        sent.append((rcpt, ml.send(w, [rcpt], data), data))
    pf.wait_delivered(len(sent), 90)
    files = {}
    for u in ("u1@pf.test", "u2@pf.test"):
        for raw in ml.maildir_messages(pf.maildir(u)):
            files[ml.msgid_tag(raw.replace(b"\n", b"\r\n"))] = (u, raw)
    for i, (rcpt, qid, data) in enumerate(sent):
        u, raw = files[f"pf{i}"]
        assert u == rcpt
        crlf = raw.replace(b"\n", b"\r\n")
        # Postfix's headers, then its Received: (with continuation lines)
        m = re.match(rb"Return-Path: <[^>]*>\r\n(?:X-Original-To: [^\r]*\r\n)?"
                     rb"Delivered-To: [^\r]*\r\n"
                     rb"Received: [^\r]*\r\n(?:[ \t][^\r]*\r\n)*", crlf)
        assert m and b"(Postfix)" in m.group(0), crlf[:500]
        ours = crlf[m.end():]
        assert ours.startswith(b"Received: ") and \
            ml.received_qid(ours) == qid, ours[:300]
        assert sc.strip_received(ours) == data, \
            f"pf{i}: Postfix got different bytes than the client sent"
    sl.wait_for(lambda: len([d for d in ml.deliveries(pf.log_text())
                             if d["status"] == "sent"]) == len(sent),
                10, 0.1, f"{len(sent)} status=sent lines from Postfix")


# ---------------------------------------------------------------- retries

def _deferred_times(w, rcpt, seen, stop_at):
    """Poll the log; record when each new deferred line for rcpt
    appears, until stop_at() or 60 s."""
    t_end = time.monotonic() + 60
    while time.monotonic() < t_end and not stop_at():
        n = len([d for d in ml.deliveries(w.lab.log_text())
                 if d["to"] == rcpt and d["status"] == "deferred"])
        while len(seen) < n:
            seen.append(time.monotonic())
        time.sleep(0.05)


@pytest.mark.pmds("tap")
def test_downstream_down_then_up(mta_lab):
    """The only MX of c.test refuses connections: messages are deferred
    (spool state deferred), retried on the back-off schedule (first after
    retry_first_s = 1, growing, at most retry_max_s = 2), and delivered
    once it listens again, each exactly once."""
    w = mta_lab(retry_first_s=1, retry_max_s=2, dest_backoff_s=1)
    s = w.minisink(MXC, start=False)
    sent = []
    for i in range(3):
        data = ml.message(f"defer{i}", to=f"d{i}@c.test")
        sent.append((f"d{i}@c.test", ml.send(w, [f"d{i}@c.test"], data), data))
    seen = []
    _deferred_times(w, "d0@c.test", seen, lambda: len(seen) >= 4)
    assert len(seen) >= 4, \
        f"d0@c.test deferred {len(seen)} times in 60 s, expected >= 4 " \
        f"with retry_first_s=1, retry_max_s=2"
    # the schedule from the log's own time stamps: each retry at least
    # retry_first_s after the one before, at most retry_max_s plus 1.5 s
    # (a whole-second retry clock rounded up, and the queue run)
    stamps = [d["time"] for d in ml.deliveries(w.lab.log_text())
              if d["to"] == "d0@c.test" and d["status"] == "deferred"]
    if all(t is not None for t in stamps):
        seen = stamps
    gaps = [round(b - a, 3) for a, b in zip(seen, seen[1:])]
    assert all(0.9 <= g <= 3.5 for g in gaps[:3]), \
        f"retry gaps {gaps}: want each within [retry_first_s = 1, " \
        f"retry_max_s = 2 + 1.5] s"
    msgs, _, _ = sl.spool(w.lab, body=False)
    states = {r["addr"]: r.get("state") for q, m in msgs.items()
              for r in m["recipients"]}
    for rcpt, qid, _ in sent:
        assert states.get(rcpt) == "deferred", (rcpt, states)
    s.up()
    s.wait_count(3, 30)
    time.sleep(3)                     # nothing more comes
    assert s.count() == 3, [m["rcpts"] for m in s.messages]
    by = s.by_rcpt()
    for rcpt, qid, data in sent:
        assert len(by[rcpt.lower()]) == 1
        check_relayed(by[rcpt.lower()][0], qid, data)
    print(f"\ndeferred at +{[round(t - seen[0], 2) for t in seen]} s "
          f"(gaps {gaps})")


@pytest.mark.pmds("tap")
def test_deferred_survive_restart(mta_lab):
    """Deferred while the downstream is down; dpmaild is killed (-9) and
    restarted on the same spool; the downstream comes up: every message
    is delivered, once."""
    w = mta_lab(retry_first_s=1, retry_max_s=2, dest_backoff_s=1)
    s = w.minisink(MXC, start=False)
    sent = []
    for i in range(5):
        data = ml.message(f"rs{i}", to=f"r{i}@c.test")
        sent.append((f"r{i}@c.test", ml.send(w, [f"r{i}@c.test"], data), data))
    ml.wait_deliveries(w.lab, lambda d: {x["to"] for x in d
                                         if x["status"] == "deferred"}
                       >= {r for r, _, _ in sent}, 30, "all deferred")
    sl.kill9(w.lab)
    sl.restart(w.lab)
    w.after_restart()
    sl.wait_reachable(w.lab)
    s.up()
    s.wait_count(5, 60)
    time.sleep(3)
    by = s.by_rcpt()
    for rcpt, qid, data in sent:
        assert len(by.get(rcpt.lower(), [])) == 1, (rcpt, s.count())
        check_relayed(by[rcpt.lower()][0], qid, data)
    assert s.count() == 5


@pytest.mark.pmds("tap")
def test_partial_550_bounce_to_local_sender(mta_lab):
    """The downstream takes good@a.test (250) and refuses bad@a.test
    (550 5.1.1) in one transaction: one delivered, one bounced; the
    bounce reaches alice's Maildir from <> and is a valid RFC 3464
    report naming only bad@a.test as failed, 5.1.1, with the remote
    diagnostic."""
    w = mta_lab()
    s = w.minisink(MX1)
    s.rcpt_replies["bad@a.test"] = "550 5.1.1 <bad@a.test>: no such user"
    data = ml.message("partial", to="good@a.test")
    qid = ml.send(w, ["good@a.test", "bad@a.test"], data)
    m = s.wait_count(1, 30)[0]
    assert m["rcpts"] == ["good@a.test"]
    check_relayed(m, qid, data)
    (rp, dt, dsn, spooled), = bounces(w, n=1, timeout=60)
    assert rp == "" and dt.lower() == SENDER, (rp, dt)
    assert [r["final-recipient-addr"].lower() for r in dsn["recipients"]] \
        == ["bad@a.test"], dsn["recipients"]
    b = dsn["recipients"][0]
    assert b["action"] == "failed" and b["status"] == "5.1.1", b
    assert "550" in b.get("diagnostic-code", ""), b
    assert "dpmail.test" in dsn["per_message"]["reporting-mta"], \
        dsn["per_message"]
    hdrs = dsn["msg"]
    assert hdrs["To"] and SENDER in hdrs["To"], hdrs["To"]
    assert qid.encode() in ml.dsn_original_text(dsn) or \
        b"partial@lab.example" in ml.dsn_original_text(dsn)
    st = {d["to"]: d["status"] for d in ml.deliveries(w.lab.log_text())
          if d["qid"] == qid}
    assert st.get("good@a.test") == "sent" and \
        st.get("bad@a.test") == "bounced", st
    time.sleep(2)
    assert s.count() == 1 and ml.maildir_count(mbox(w, "alice")) == 1


@pytest.mark.pmds("tap")
def test_delay_dsn_then_delivered(mta_lab):
    """RCPT NOTIFY=DELAY,FAILURE and delay_warning_s = 2: while the only
    MX refuses, alice gets one "delayed" report (Action delayed, Status
    4.x.x); once the MX listens the message is delivered, and no failure
    report follows."""
    w = mta_lab(retry_first_s=1, retry_max_s=2, delay_warning_s=2)
    s = w.minisink(MXC, start=False)
    data = ml.message("delay", to="dl@c.test")
    qid = ml.send(w, ["dl@c.test"], data, rcpt_params="NOTIFY=DELAY,FAILURE")
    (rp, dt, dsn, _), = bounces(w, n=1, timeout=30)
    assert rp == "" and dt.lower() == SENDER, (rp, dt)
    b = rcpt_block(dsn, "dl@c.test")
    assert b["action"] == "delayed" and b["status"].startswith("4."), b
    s.up()
    m = s.wait_count(1, 30)[0]
    check_relayed(m, qid, data)
    time.sleep(3)
    assert ml.maildir_count(mbox(w, "alice")) == 1, \
        "a second report after the delay warning"
    assert s.count() == 1


# ---------------------------------------------------------------- local

def _local_users(n):
    return [f"u{i:03d}" for i in range(n)]


def _check_maildirs(w, users, acked, data_of):
    """Every Maildir file: Return-Path + Delivered-To + our Received:
    (with the acknowledged queue ID) + the exact data; each in the right
    user's Maildir. Returns (per-tag count, alien files)."""
    seen, alien = {}, []
    for u in users:
        for raw in ml.maildir_messages(mbox(w, u)):
            rp, dt, spooled = ml.split_delivered(raw)
            tag = ml.msgid_tag(spooled)
            if tag not in data_of:
                alien.append((u, raw[:200]))
                continue
            user_of_tag, data = data_of[tag]
            assert user_of_tag == u, f"{tag} for {user_of_tag} found in {u}"
            assert rp == SENDER and dt.lower() == f"{u}@dpmail.test", (rp, dt)
            assert sc.strip_received(spooled) == data, f"{tag}: altered"
            q = ml.received_qid(spooled)
            if tag in acked:
                assert q == acked[tag], (tag, q, acked[tag])
            seen[tag] = seen.get(tag, 0) + 1
    return seen, alien


def _local_delivery(w, n_users, n_msgs, n_crash, sessions, timeout):
    users = _local_users(n_users)
    data_of = {}
    items = []
    for seq in range(n_msgs + n_crash):
        tag = f"L{seq}"
        u = users[seq % n_users]
        data = ml.message(tag, to=f"{u}@dpmail.test", size=900 + seq % 700)
        data_of[tag] = (u, data)
        items.append((tag, SENDER, [f"{u}@dpmail.test"], data))
    t0 = time.monotonic()
    res = ml.send_many(w.lab.ns, items[:n_msgs], sessions=sessions,
                       per_conn=100)
    t_send = time.monotonic() - t0
    acked = {k: v[0] for k, v in res.items() if v[1] == 250}
    assert len(acked) == n_msgs, \
        f"{n_msgs - len(acked)} not taken: {list(res.items())[:3]}"

    def total():
        return sum(ml.maildir_count(mbox(w, u)) for u in users)
    deadline = time.monotonic() + timeout
    while total() < n_msgs and time.monotonic() < deadline:
        time.sleep(0.2)
    t_all = time.monotonic() - t0
    assert total() == n_msgs, f"{total()} of {n_msgs} delivered in {timeout}s"
    seen, alien = _check_maildirs(w, users, acked, data_of)
    assert not alien and len(seen) == n_msgs and \
        all(v == 1 for v in seen.values()), \
        f"aliens {alien[:3]}, dups {[k for k, v in seen.items() if v > 1][:5]}"
    for u in users:
        assert ml.maildir_count(mbox(w, u)) == n_msgs // n_users + \
            (1 if users.index(u) < n_msgs % n_users else 0), u
    print(f"\nlocal: {n_msgs} messages to {n_users} users: sent in "
          f"{t_send:.1f} s, all delivered after {t_all:.1f} s, each "
          f"byte-exact in its Maildir")
    if not n_crash:
        return

    # kill -9 while the next batch is being taken and delivered
    crash_items = items[n_msgs:]
    before = total()
    out = {}

    def sender():
        out.update(ml.send_many(w.lab.ns, crash_items, sessions=sessions,
                                per_conn=50, timeout=20))
    th = threading.Thread(target=sender)
    th.start()
    sl.wait_for(lambda: total() >= before + n_crash // 4, 120, 0.02,
                "deliveries of the crash batch")
    sl.kill9(w.lab)
    delivered_at_kill = total() - before
    th.join(120)
    acked2 = {k: v[0] for k, v in out.items() if v[1] == 250}
    acked.update(acked2)
    sl.restart(w.lab)
    w.after_restart()
    # wait until every acknowledged message is there and the count is
    # stable for 3 s
    last, stable = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = total()
        if n != last:
            last, stable = n, time.monotonic()
        seen, _ = _check_maildirs(w, users, acked, data_of)
        if all(t in seen for t in acked) and time.monotonic() - stable > 3:
            break
        time.sleep(0.5)
    seen, alien = _check_maildirs(w, users, acked, data_of)
    lost = sorted(t for t in acked if t not in seen)
    dups = {t: c for t, c in seen.items() if c > 1}
    unacked = sorted(t for t in seen if t not in acked)
    print(f"crash: killed with {delivered_at_kill} of the batch delivered; "
          f"{len(acked2)} of {n_crash} acknowledged; after restart: lost "
          f"{len(lost)}, delivered twice {len(dups)} "
          f"{sorted(dups)[:20]}, delivered but never acknowledged "
          f"{len(unacked)} {unacked[:20]}")
    labmod.record_result("mta_local_crash", {
        "messages": n_msgs, "users": n_users, "crash_batch": n_crash,
        "acked_crash_batch": len(acked2), "lost": lost,
        "duplicates": dups, "unacked_delivered": unacked})
    assert not alien, alien[:3]
    assert not lost, f"{len(lost)} acknowledged messages never delivered: " \
                     f"{lost[:20]}"


@pytest.mark.pmds("tap")
def test_local_delivery_small_and_kill9(mta_lab):
    """500 messages to 20 local users, each byte-exact in its Maildir
    exactly once; then kill -9 while 500 more are being taken and
    delivered, restart: nothing acknowledged lost, duplicates reported."""
    w = mta_lab(users=["alice"] + _local_users(20))
    _local_delivery(w, 20, 500, 500, sessions=8, timeout=120)


@pytest.mark.long
@pytest.mark.pmds("tap")
def test_local_delivery_10k(mta_lab):
    """10,000 messages to 100 local users over 16 sessions: every Maildir
    holds exactly its messages, byte-exact (Return-Path + Delivered-To +
    the spooled message); then kill -9 during the delivery of 3,000 more
    and restart: no acknowledged message lost, duplicates counted."""
    w = mta_lab(users=["alice"] + _local_users(100))
    _local_delivery(w, 100, 10000, 3000, sessions=16, timeout=600)


# ---------------------------------------------------------------- policy

@pytest.mark.pmds("tap")
def test_mail_loop_bounces_546(mta_lab):
    """50 Received: headers from the client (smtpd takes it: not more
    than max_received = 50), 51 with ours: not relayed, bounced 5.4.6.
    51 from the client are refused at the end of data (554 5.4.6)."""
    w = mta_lab()
    s = w.minisink(MX1)
    hops = [f"Received: from hop{i}.example by hop{i + 1}.example; "
            f"Thu, 26 Nov 2026 10:00:{i % 60:02d} +0000" for i in range(50)]
    data = b"".join(h.encode() + b"\r\n" for h in hops) + \
        ml.message("loop", to="x@a.test")
    qid = ml.send(w, ["x@a.test"], data)
    (rp, dt, dsn, _), = bounces(w, n=1, timeout=60)
    b = rcpt_block(dsn, "x@a.test")
    assert b["action"] == "failed" and b["status"] == "5.4.6", b
    assert s.sessions == 0, "the looping message was relayed"
    qid2, rr, fin = ml.send_one(
        w.lab.ns, SENDER, ["x@a.test"],
        b"Received: from hop.example by hop2.example; Thu, 26 Nov 2026 "
        b"10:00:00 +0000\r\n" + data)
    assert fin is not None and fin.code == 554 and "5.4.6" in fin.text, fin
    # like every other outcome, the bounce has its per-recipient log line
    # (Postfix: "to=<x>, relay=none, ..., dsn=5.4.6, status=bounced
    # (mail forwarding loop for x)")
    st = ml.status_of(w.lab, qid, "x@a.test")
    assert st and st[-1] == "bounced", \
        f"no 'to=<x@a.test>, ... status=bounced' log line for {qid}: {st}"


@pytest.mark.pmds("tap")
def test_transport_map(mta_lab):
    """transport_file: tm.test and everything under .sub.tm.test to
    [198.18.0.12]:2525 (no MX lookup; port 25 there stays unused);
    rej.test rejected with 550 5.7.1 (at RCPT, or bounced): nothing goes
    out for it."""
    w = mta_lab(transport=["tm.test [198.18.0.12]:2525",
                           ".sub.tm.test [198.18.0.12]:2525",
                           "rej.test reject 550 5.7.1 no mail for rej.test"])
    s = w.minisink(MXB, 2525)
    other = w.minisink(MXB, 25)
    d1 = ml.message("tm1", to="t@tm.test")
    d2 = ml.message("tm2", to="t@deep.sub.tm.test")
    q1 = ml.send(w, ["t@tm.test"], d1)
    q2 = ml.send(w, ["t@deep.sub.tm.test"], d2)
    msgs = s.wait_count(2, 30)
    by = {m["rcpts"][0]: m for m in msgs}
    check_relayed(by["t@tm.test"], q1, d1)
    check_relayed(by["t@deep.sub.tm.test"], q2, d2)
    qid, rr, fin = ml.send_one(w.lab.ns, SENDER, ["r@rej.test"],
                               ml.message("rej", to="r@rej.test"))
    r = rr["r@rej.test"]
    if r.code == 250:
        (rp, dt, dsn, _), = bounces(w, n=1, timeout=30)
        b = rcpt_block(dsn, "r@rej.test")
        assert b["status"] == "5.7.1", b
    else:
        assert r.code == 550 and "5.7.1" in r.text, r
    time.sleep(1)
    assert s.count() == 2 and other.sessions == 0


@pytest.mark.pmds("tap")
def test_relayhost(mta_lab):
    """relayhost = [198.18.0.13]:2526: every remote domain goes there,
    whatever its MX; local mail stays local."""
    w = mta_lab(relayhost=f"[{MXC}]:2526")
    rh = w.minisink(MXC, 2526)
    mx = w.minisink(MX1)
    d1 = ml.message("rh1", to="x@a.test")
    d2 = ml.message("rh2", to="y@b.test")
    d3 = ml.message("rh3", to="bob@dpmail.test")
    q1 = ml.send(w, ["x@a.test"], d1)
    q2 = ml.send(w, ["y@b.test"], d2)
    ml.send(w, ["bob@dpmail.test"], d3)
    msgs = rh.wait_count(2, 30)
    by = {m["rcpts"][0]: m for m in msgs}
    check_relayed(by["x@a.test"], q1, d1)
    check_relayed(by["y@b.test"], q2, d2)
    (raw,) = ml.wait_files(mbox(w, "bob"), 1, 30)
    assert sc.strip_received(ml.split_delivered(raw)[2]) == d3
    assert mx.sessions == 0


@pytest.mark.pmds("tap")
def test_aliases_detail_catchall_unknown(mta_lab):
    """aliases: team -> bob, carol and ext@b.test (two local Maildirs and
    one relay); alice+news -> alice (+detail); @catch.test -> carol
    (catch-all); an unknown local user is refused at RCPT (550 5.1.1)."""
    w = mta_lab(local_domains="dpmail.test, catch.test",
                aliases={"team": ["bob", "carol", "ext@b.test"],
                         "@catch.test": ["carol"]})
    sb = w.minisink(MXB)
    d1 = ml.message("alias", to="team@dpmail.test")
    q1 = ml.send(w, ["team@dpmail.test"], d1)
    for u in ("bob", "carol"):
        (raw,) = ml.wait_files(mbox(w, u), 1, 30, u)
        rp, dt, spooled = ml.split_delivered(raw)
        assert rp == SENDER and sc.strip_received(spooled) == d1, u
        assert ml.received_qid(spooled) == q1
    m = sb.wait_count(1, 30)[0]
    assert m["rcpts"] == ["ext@b.test"]
    check_relayed(m, q1, d1)
    d2 = ml.message("detail", to="alice+news@dpmail.test")
    ml.send(w, ["alice+news@dpmail.test"], d2)
    (raw,) = ml.wait_files(mbox(w, "alice"), 1, 30, "alice (+detail)")
    rp, dt, spooled = ml.split_delivered(raw)
    assert sc.strip_received(spooled) == d2
    assert dt.lower() in ("alice+news@dpmail.test", "alice@dpmail.test"), dt
    d3 = ml.message("catch", to="whoever@catch.test")
    ml.send(w, ["whoever@catch.test"], d3)
    raws = ml.wait_files(mbox(w, "carol"), 2, 30, "carol (catch-all)")
    assert any(sc.strip_received(ml.split_delivered(r)[2]) == d3
               for r in raws)
    qid, rr, fin = ml.send_one(w.lab.ns, SENDER, ["nobody@dpmail.test"],
                               ml.message("unknown"))
    r = rr["nobody@dpmail.test"]
    assert r.code == 550 and "5.1.1" in r.text, r


@pytest.mark.pmds("tap")
def test_queue_lifetime_expiry(mta_lab):
    """The downstream never answers (RST) and queue_lifetime_s is 4: the
    message is bounced as expired (Action failed, Status 4.4.7 or 5.4.7)
    to the local sender."""
    w = mta_lab(retry_first_s=1, retry_max_s=1, queue_lifetime_s=4)
    data = ml.message("expire", to="e@c.test")
    t0 = time.monotonic()
    qid = ml.send(w, ["e@c.test"], data)
    (rp, dt, dsn, _), = bounces(w, n=1, timeout=60)
    took = time.monotonic() - t0
    b = rcpt_block(dsn, "e@c.test")
    assert b["action"] == "failed", b
    assert b["status"] in ("4.4.7", "5.4.7"), b
    assert took >= 3, f"bounced after {took:.1f} s, before the lifetime"
    st = ml.status_of(w.lab, qid, "e@c.test")
    assert "deferred" in st, st
    print(f"\nexpired after {took:.1f} s: {b['status']}; log {st}")


@pytest.mark.pmds("tap")
def test_null_sender_failure_double_bounce(mta_lab):
    """A message from <> that fails (550 at the downstream) is never
    bounced to <>; the failure goes to the postmaster (double bounce),
    and nothing more is sent to the downstream."""
    w = mta_lab(users=["alice", "bob", "carol", "postmaster"])
    s = w.minisink(MX1)
    s.rcpt_replies["bad@a.test"] = "550 5.1.1 no such user"
    data = ml.message("nullsender", sender="", to="bad@a.test")
    qid = ml.send(w, ["bad@a.test"], data, sender="")
    ml.wait_deliveries(w.lab, lambda d: any(
        x["qid"] == qid and x["status"] == "bounced" for x in d), 30,
        "the bounce of the <> message")
    raws = ml.wait_files(mbox(w, "postmaster"), 1, 30, "double bounce")
    rp, dt, spooled = ml.split_delivered(raws[0])
    assert rp == "" and dt.lower().startswith("postmaster@"), (rp, dt)
    dsn = ml.parse_dsn(spooled)
    assert rcpt_block(dsn, "bad@a.test")["action"] == "failed"
    time.sleep(2)
    assert s.count() == 0
    # no session carried a message to <> (no RCPT TO:<>)
    assert not any("RCPT TO:<>" in c for _, _, c in s.commands), \
        s.commands
    assert ml.maildir_count(mbox(w, "alice")) == 0
