"""SMTP under load: Postfix's smtp-source (many parallel sessions, one
message per connection) and, alongside it, our own asyncio client
(smtpclient.py: pipelined DATA sessions, and sessions that pipeline whole
BDAT transactions 4 deep; several messages per connection) that records
the queue ID of every 250 and the SHA-256 of the data it sent.

Afterwards the spool must hold every acknowledged message, byte for byte:
our client's by queue ID and hash; smtp-source's (which prints no queue
IDs) by count and content: each must be smtp-source's fixed headers with a
unique Message-Id, then exactly the payload smtp-source sends for that
length (taken from one message sent to a capture sink on the namespace's
loopback). Zero lost; spool count = acknowledged count, duplicates
counted and reported.

`test_smtp_source_20k` (64 sessions, 20,000 messages) is `long`; the
small one runs everywhere, sanitizer build included.
"""

import re
import threading
import time

import pytest

import smtpclient as sc
import smtplab as sl
from lab import DAEMON_IP, record_result

pytestmark = [pytest.mark.netns, pytest.mark.pmds("tap"),
              pytest.mark.lab_config(tcp={"msl_ms": 1000})]

@pytest.fixture(autouse=True)
def _reachable(lab):
    """The daemon answers (ARP resolved) before a test's first connect."""
    sl.wait_reachable(lab)


SRC_FROM = "source@load.example"
SRC_TO = "alice@dpmail.test"
SRC_HEAD_RE = re.compile(
    rb"From: <" + re.escape(SRC_FROM.encode()) + rb">\r\n"
    rb"To: <" + re.escape(SRC_TO.encode()) + rb">\r\n"
    rb"Date: [^\r\n]+\r\n"
    rb"Message-Id: <([^>\r\n]+)>\r\n\r\n")


def tune_client_ns(lab):
    lab.run(["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"])
    lab.run(["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])


def smtp_source_cmd(n, sessions, size, port=25, host=DAEMON_IP,
                    per_conn=False):
    cmd = ["smtp-source", "-c", "-s", str(sessions), "-m", str(n),
           "-l", str(size), "-f", SRC_FROM, "-t", SRC_TO,
           "-M", "source.load.example"]
    if per_conn:
        cmd.append("-d")
    return cmd + [f"{host}:{port}"]


def source_payload(lab, size):
    """What smtp-source sends after its headers for -l size."""
    sink = sl.CaptureSink(lab.ns, 2525)
    try:
        lab.run(smtp_source_cmd(1, 1, size, port=2525, host="127.0.0.1"),
                timeout=30)
    finally:
        sink.close()
    assert len(sink.messages) == 1, sink.messages
    m = SRC_HEAD_RE.match(sink.messages[0])
    assert m, sink.messages[0][:300]
    return sink.messages[0][m.end():]


def source_count(out):
    """smtp-source -c prints a running count of completed DATA."""
    nums = [int(x) for x in re.findall(r"\d+", out.replace("\r", "\n"))]
    return max(nums) if nums else 0


def check_source_messages(msgs, payload):
    """The spool's smtp-source messages: count, duplicates (by
    Message-Id), and any whose content is not what smtp-source sent."""
    ids, bad, n = {}, [], 0
    for qid, rec in msgs.items():
        if rec.get("mail_from") != SRC_FROM:
            continue
        n += 1
        data = sl.stored_data(rec)
        m = SRC_HEAD_RE.match(data)
        if not m or data[m.end():] != payload:
            bad.append(qid)
            continue
        ids[m.group(1)] = ids.get(m.group(1), 0) + 1
    dups = sum(v - 1 for v in ids.values())
    return n, dups, bad


def run_load(lab, seq_tag, results, **kw):
    """Our client in a thread: records every ack."""
    acks = []
    cfg = sc.LoadConfig(netns=lab.ns, host=DAEMON_IP, tag=seq_tag, **kw)
    results["ours"] = sc.run_load(cfg, record=acks.append)
    results["acks"] = acks


def load_test(lab, n_source, sessions, size, n_ours, ours_sessions,
              timeout, name):
    tune_client_ns(lab)
    payload = source_payload(lab, size)
    c0 = lab.counters()
    results = {}
    t = threading.Thread(target=run_load, args=(lab, name, results), kwargs=dict(
        sessions=ours_sessions, messages=n_ours, per_conn=10, size=3000,
        timeout=30, data_timeout=60, bdat_depth=4))
    t0 = time.monotonic()
    t.start()
    res = lab.run(smtp_source_cmd(n_source, sessions, size), check=False,
                  timeout=timeout)
    src_secs = time.monotonic() - t0
    t.join(timeout)
    assert not t.is_alive(), "our load client did not finish"
    out = res.stdout + res.stderr
    acked_src = source_count(res.stdout)
    assert res.returncode == 0 and acked_src == n_source, \
        (f"smtp-source failed (rc {res.returncode}, {acked_src} of "
         f"{n_source} done): {out[-2000:]}\n{lab.log_tail()}")
    ours = results["ours"]
    acks = results["acks"]
    assert ours["acked"] == n_ours, ours
    c1 = lab.counters()

    msgs, qdups, _ = sl.spool(lab)
    rep = sc.check_acks(acks, msgs)
    n_src, src_dups, src_bad = check_source_messages(msgs, payload)
    ours_in_spool = sum(1 for r in msgs.values()
                        if r.get("mail_from") == "load@client.example")
    summary = {
        "smtp_source": {"messages": n_source, "sessions": sessions,
                        "size": size, "acked": acked_src,
                        "seconds": round(src_secs, 2),
                        "msgs_per_s": round(acked_src / src_secs, 1),
                        "in_spool": n_src, "duplicates": src_dups,
                        "bad_content": len(src_bad)},
        "ours": dict(ours, in_spool=ours_in_spool,
                     missing=len(rep["missing"]),
                     mismatch=len(rep["mismatch"])),
        "spool_messages": len(msgs), "qid_duplicates": len(qdups),
        "counters": {k: v for k, v in sl_delta(c0, c1).items()
                     if k.startswith(("smtp.", "spool.")) and v},
    }
    print(f"\n{name}: smtp-source {acked_src}/{n_source} acked in "
          f"{src_secs:.1f} s ({acked_src / src_secs:.0f} msg/s, {sessions} "
          f"sessions, 1 per connection); ours {ours['acked']}/{n_ours} "
          f"({ours['msgs_per_s']} msg/s, p50 {ours['lat_p50_ms']} ms, p99 "
          f"{ours['lat_p99_ms']} ms end of data -> 250)")
    print(f"  spool: {len(msgs)} messages; smtp-source's {n_src} "
          f"(duplicates {src_dups}, bad {len(src_bad)}); ours "
          f"{ours_in_spool} (missing {len(rep['missing'])}, mismatch "
          f"{len(rep['mismatch'])}); counters {summary['counters']}")
    record_result(name, summary)
    assert not qdups, f"queue IDs stored twice: {qdups[:10]}"
    assert not rep["missing"], f"acknowledged but lost: {rep['missing'][:10]}"
    assert not rep["mismatch"], f"stored differently: {rep['mismatch'][:10]}"
    assert not src_bad, f"smtp-source messages stored wrongly: {src_bad[:10]}"
    assert n_src - src_dups == n_source, \
        f"smtp-source: {n_source} acked, {n_src - src_dups} distinct stored"
    assert src_dups == 0 and ours_in_spool == n_ours, summary
    assert len(msgs) == n_source + n_ours, summary
    queued = summary["counters"].get("smtp.messages_queued")
    if queued is not None:
        assert queued == n_source + n_ours, summary["counters"]
    return summary


def sl_delta(a, b):
    return {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}


def test_smtp_source_small(lab):
    """1,000 messages from smtp-source over 16 sessions with 300 of ours
    over 4 pipelined sessions alongside."""
    load_test(lab, 1000, 16, 2048, 300, 4, timeout=300,
              name="smtp_load_small")


@pytest.mark.long
def test_smtp_source_20k(lab):
    """20,000 messages from smtp-source over 64 parallel sessions (one
    per connection) with 2,000 of ours over 16 pipelined sessions."""
    load_test(lab, 20000, 64, 1024, 2000, 16, timeout=600,
              name="smtp_load_20k")
