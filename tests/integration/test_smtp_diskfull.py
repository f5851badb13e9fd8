"""Disk full: the spool on an 8 MiB tmpfs (mounted on the test's spool
dir, unmounted afterwards) fills under 100 KB messages. Clients must get
a 4xx (452 4.3.1 or 451 4.3.0) in the same session, never a 5xx or a
dropped connection (one client session sends DATA, the other whole BDAT
transactions two deep, whose chunks must be read and dropped when the
MAIL before them was refused); nothing acknowledged is lost; once the tmpfs is grown
(remount, size=64m) acceptance resumes by itself (the spool's retry
probe), and a restart on the same spool recovers everything.
"""

import time

import pytest

import smtpclient as sc
import smtplab as sl
from lab import DAEMON_IP, record_result

# The spool must fill: messages are held there, not delivered (delivery
# would free the segments; test_mta.py covers delivery).
pytestmark = [pytest.mark.netns, pytest.mark.pmds("tap"),
              pytest.mark.lab_config(mta={"hold": True})]

SIZE = 100_000


@pytest.fixture
def small_spool(tmp_path):
    """An 8 MiB tmpfs where the lab puts its spool (tmp_path/spool);
    requested before `lab`, so it is mounted before the daemon starts
    and unmounted after it stopped."""
    fs = sl.Tmpfs(tmp_path / "spool", "8m")
    try:
        yield fs
    finally:
        fs.close()


def load(lab, n, sessions, tag, acks, fails):
    cfg = sc.LoadConfig(netns=lab.ns, host=DAEMON_IP, sessions=sessions,
                        messages=n, per_conn=n, size=SIZE, tag=tag,
                        record_failures=True, timeout=30, data_timeout=60,
                        bdat_depth=2)

    def record(obj):
        (acks if obj.get("qid") else fails).append(obj)
    return sc.run_load(cfg, record=record)


def try_message(c, tag, acks):
    """One 100 KB message on Conn c; a refusal at MAIL (the spool is
    degraded) or after the data is returned as the reply."""
    data = sc.fast_message(tag, int(time.monotonic() * 1e3), SIZE)
    r = c.cmd(f"MAIL FROM:<{tag}@client.example> SIZE={len(data)}")
    if r.code != 250:
        return r
    r = c.cmd("RCPT TO:<alice@dpmail.test>")
    assert r.code == 250, r
    r = c.data(data)
    if r.code == 250:
        acks.append({"qid": r.qid, "sha": sc.sha256(data), "len": len(data)})
    else:
        assert c.cmd("RSET").code == 250
    return r


# max_errors high: a refused MAIL makes the pipelined RCPT and DATA/BDAT
# answer 503, and those count as errors; this test is about storage
@pytest.mark.lab_config(spool={"segment_mb": 1, "retry_ms": 100},
                        smtp={"max_errors": 1000})
def test_disk_full(small_spool, lab):
    sl.wait_reachable(lab)
    acks, fails = [], []
    # 1. fill it: 160 x 100 KB into 8 MiB
    r1 = load(lab, 160, 2, "full", acks, fails)
    print(f"\nfilling: {r1['acked']} acked, codes {r1['codes']}, "
          f"sessions ended by 421: {r1['closed_421']}, "
          f"free {small_spool.free_bytes()} B")
    for e in r1["errors"]:
        print(f"  client: {e}")
    assert r1["acked"] > 0, r1
    assert r1["tempfail"] > 0, f"the 8 MiB spool never filled: {r1}"
    assert r1["permfail"] == 0 and r1["conn_errors"] == 0, r1["errors"]
    assert set(r1["codes"]) <= {"250", "451", "452"}, r1["codes"]
    texts = {f.get("text", "")[:5] for f in fails if "code" in f}
    assert texts <= {"4.3.1", "4.3.0"}, texts
    assert lab.alive()
    # 2. acknowledged so far: all there
    msgs, qdups, _ = sl.spool(lab)
    rep = sc.check_acks(acks, msgs)
    assert not rep["missing"] and not rep["mismatch"] and not qdups, rep
    # 3. still (nearly) full: a 4xx again within a few messages (at MAIL
    # while the spool is degraded, or after the data), and the session
    # goes on after it
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        for _ in range(40):
            r = try_message(c, "still", acks)
            if r.code != 250:
                break
        assert r.code in (451, 452), r
        assert c.cmd("NOOP").code == 250
    # 4. room again: acceptance resumes without a restart
    small_spool.resize("64m")
    t0 = time.monotonic()

    def accepted():
        with sl.conn(lab) as c:
            c.ehlo()
            r = try_message(c, "probe", acks)
            assert r.code in (250, 451, 452), r
            return r.code == 250
    sl.wait_for(accepted, 15, 0.1, "acceptance after the spool has room")
    resumed_s = time.monotonic() - t0
    r2 = load(lab, 40, 2, "after", acks, fails)
    assert r2["acked"] == 40, r2
    c = lab.counters()
    smtp = {k: v for k, v in c.items()
            if k.startswith(("smtp.", "spool.")) and v}
    print(f"resumed {resumed_s:.2f} s after the remount; then {r2['acked']}"
          f" acked; counters {smtp}")
    # 5. clean stop, everything acknowledged is there, exact
    assert lab.stop() == 0, lab.log_tail()
    msgs, qdups, _ = sl.spool(lab)
    rep = sc.check_acks(acks, msgs)
    unacked = rep["unacked_in_spool"]
    # 6. a restart recovers the spool the full disk left behind
    text = sl.restart(lab)
    msgs2, _, _ = sl.spool(lab)
    rep2 = sc.check_acks(acks, msgs2)
    result = {"acked": len(acks), "tempfailed": len(fails),
              "codes_filling": r1["codes"], "resumed_s": round(resumed_s, 2),
              "spool_messages": len(msgs), "unacked_in_spool": len(unacked),
              "counters": smtp}
    print(f"disk full: {result}")
    record_result("smtp_diskfull", result)
    assert not qdups, qdups
    assert not rep["missing"], f"lost: {rep['missing'][:10]}"
    assert not rep["mismatch"], rep["mismatch"][:10]
    assert not rep2["missing"] and not rep2["mismatch"], rep2
    assert "ready" in text
