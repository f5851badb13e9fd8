"""SMTP over the userspace stack: real clients (swaks, Python smtplib,
curl, and a raw-socket client for BDAT, DSN and hostile input) against
dpmaild's listeners on 198.18.0.2:25 and :587, every accepted message
checked in the spool byte for byte (`dpmailctl spool dump --json --body`:
the stored body is our Received: header followed by the client's data,
dot-unstuffed).

Also the protocol's edges over the wire: SIZE and the other limits with
their replies, timeouts and the minimum data rate, the per-client
connection limit, VRFY, unknown users, SMTP smuggling (a message never
split, a second one never injected) and open-relay probes.

Run as root; the lab's namespace, daemon and spool are per test.
"""

import re
import socket
import struct
import threading
import time
from email.message import EmailMessage

import pytest

import smtpclient as sc
import smtplab as sl
from lab import DAEMON_IP

pytestmark = [pytest.mark.netns, pytest.mark.pmds("tap")]


@pytest.fixture(autouse=True)
def _reachable(lab):
    """The daemon answers (ARP resolved) before a test's first connect."""
    sl.wait_reachable(lab)


MiB = 1 << 20
HOST = "mx.dpmail.test"
SWAKS_QID_RE = re.compile(r"<-  250 2\.0\.0 Ok: queued as ([0-9A-Z]{14})")


def body_8bit(n_lines=40, tag="x"):
    """CRLF lines with 8-bit UTF-8, lines that start with '.' and '..',
    a lone '.' line and long-ish lines."""
    lines = [f"Subject: test {tag}", "MIME-Version: 1.0",
             "Content-Type: text/plain; charset=utf-8",
             "Content-Transfer-Encoding: 8bit", ""]
    for i in range(n_lines):
        if i % 9 == 3:
            lines.append(".")
        elif i % 7 == 2:
            lines.append(f".leading dot {i}")
        elif i % 11 == 5:
            lines.append(f"..two dots {i}")
        else:
            lines.append(f"line {i} gr\u00fc\u00dfe \u65e5\u672c \u00e9t\u00e9 " +
                         "x" * (i * 7 % 300))
    return ("\r\n".join(lines) + "\r\n").encode()


def swaks(lab, tmp_path, data, *args, port=25, name="msg.eml"):
    """swaks with exactly `data` as DATA (it sends the file as is with
    -ndf, so it gets the dot-stuffing and the final '.')."""
    f = tmp_path / name
    f.write_bytes(sc.dot_stuff(data) + b".")
    res = lab.run(["swaks", "--server", DAEMON_IP, "--port", str(port),
                   "--ehlo", "swaks.client.example", "-ndf",
                   "--data", f"@{f}", "--timeout", "30"] + list(args),
                  check=False, timeout=90)
    return res.returncode, res.stdout + res.stderr


def ehlo_keywords(reply):
    return {l.split()[0].upper(): l for l in reply.lines[1:] if l.strip()}


def simple_message(c, data, sender="a@client.example",
                   rcpts=("alice@dpmail.test",)):
    """MAIL/RCPT/DATA on a Conn; returns the final reply."""
    r = c.cmd(f"MAIL FROM:<{sender}>")
    assert r.code == 250, r
    for a in rcpts:
        r = c.cmd(f"RCPT TO:<{a}>")
        assert r.code == 250, (a, r)
    return c.data(data)


# ---------------------------------------------------------------- clients

@pytest.mark.smoke
def test_swaks_pipelining_8bit(lab, tmp_path):
    """swaks with PIPELINING: MAIL, RCPT and DATA go out before their
    replies; an 8-bit body with leading dots is stored exactly."""
    data = body_8bit(tag="swaks")
    rc, out = swaks(lab, tmp_path, data, "--pipeline",
                    "--from", "sender@client.example",
                    "--to", "alice@dpmail.test")
    assert rc == 0, out
    assert "PIPELINING" in out and "8BITMIME" in out, out
    # pipelined: the three commands precede the first of their replies
    sent = [l for l in out.splitlines() if l.startswith((" -> ", "<-  "))]
    i = next(k for k, l in enumerate(sent) if l.startswith(" -> MAIL FROM"))
    assert sent[i + 1].startswith(" -> RCPT TO") and \
        sent[i + 2].startswith(" -> DATA"), sent[i:i + 6]
    m = SWAKS_QID_RE.search(out)
    assert m, out
    rec = sl.assert_stored(lab, m.group(1), data,
                           mail_from="sender@client.example",
                           rcpts=["alice@dpmail.test"])
    received = rec["body_bytes"][:rec["body_bytes"].index(b"\r\n\r\n")]
    assert received.startswith(b"Received: from swaks.client.example"), \
        received[:200]
    assert HOST.encode() in received and m.group(1).encode() in received, \
        received[:300]
    logged = {q: (f, n) for q, f, n, _ in sl.queued_log_lines(lab)}
    assert logged.get(m.group(1)) == ("sender@client.example", 1), logged


def test_swaks_submission_port_two_rcpts(lab, tmp_path):
    """Port 587 too; two recipients, no pipelining."""
    data = body_8bit(5, tag="587")
    rc, out = swaks(lab, tmp_path, data, "--from", "s2@client.example",
                    "--to", "bob@dpmail.test,carol@dpmail.test", port=587)
    assert rc == 0, out
    m = SWAKS_QID_RE.search(out)
    assert m, out
    rec = sl.assert_stored(lab, m.group(1), data, mail_from="s2@client.example",
                           rcpts=["bob@dpmail.test", "carol@dpmail.test"])
    assert rec["local_port"] == 587, rec["local_port"]
    assert rec["esmtp"] is True and rec["helo"] == "swaks.client.example", rec


def test_smtplib_smtputf8(lab):
    """smtplib: send_message with internationalised addresses (it adds
    SMTPUTF8 and BODY=8BITMIME), and sendmail with mail_options=
    ['SMTPUTF8']; both stored with their UTF-8 sender."""
    with sl.smtplib_client(lab) as s:
        code, _ = s.ehlo("py.client.example")
        assert code == 250
        for ext in ("smtputf8", "8bitmime", "pipelining", "size", "chunking",
                    "dsn", "enhancedstatuscodes"):
            assert s.has_extn(ext), (ext, s.esmtp_features)
        msg = EmailMessage()
        msg["From"] = "J\u00f6rg <j\u00f6rg@b\u00fccher.example>"
        msg["To"] = "alice@dpmail.test"
        msg["Subject"] = "Gr\u00fc\u00dfe aus M\u00fcnchen"
        msg.set_content("H\u00e4llo,\n.a line with a dot\n\u65e5\u672c\u8a9e\n",
                        cte="8bit")
        refused = s.send_message(msg)
        assert refused == {}, refused
        qid1, data1 = s.last_qid, s.last_sent
        assert qid1, s.last_data_reply

        sender2 = "\u03b4\u03bf\u03ba\u03b9\u03bc\u03ae@\u03c0\u03b1\u03c1" \
                  "\u03ac\u03b4\u03b5\u03b9\u03b3\u03bc\u03b1.example"
        raw = ("From: <" + sender2 + ">\r\nTo: bob@dpmail.test\r\n"
               "Subject: utf8\r\n\r\n\u03ba\u03b1\u03bb\u03b7\u03bc\u03ad"
               "\u03c1\u03b1\r\n").encode()
        refused = s.sendmail(sender2, ["bob@dpmail.test"], raw,
                             mail_options=["SMTPUTF8"])
        assert refused == {}, refused
        qid2 = s.last_qid
        assert qid2 and qid2 != qid1
    msgs, dups, _ = sl.spool(lab)
    rec1 = sl.assert_stored(lab, qid1, data1,
                            mail_from="j\u00f6rg@b\u00fccher.example",
                            rcpts=["alice@dpmail.test"], msgs=msgs)
    assert rec1["smtputf8"] is True and rec1["body_type"] == "8bitmime", rec1
    rec2 = sl.assert_stored(lab, qid2, raw, mail_from=sender2,
                            rcpts=["bob@dpmail.test"], msgs=msgs)
    assert rec2["smtputf8"] is True, rec2


def test_utf8_address_needs_smtputf8(lab):
    """RFC 6531 3.4: a non-ASCII address without SMTPUTF8 is refused."""
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        r = c.cmd("MAIL FROM:<j\u00f6rg@b\u00fccher.example>")
        assert 500 <= r.code < 600, r
        r = c.cmd("MAIL FROM:<ok@client.example>")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<\u00e4lice@dpmail.test>")
        assert 500 <= r.code < 600, r


def test_smtplib_20mib(lab):
    """send_message with a 20 MiB body arrives whole and exact."""
    line = "0123456789 abcdefghijklmnopqrstuvwxyz \u00e9\u00e8\u00ea " \
           "ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:\n"
    text = line * (20 * MiB // len(line.encode()) + 1)
    msg = EmailMessage()
    msg["From"] = "big@client.example"
    msg["To"] = "carol@dpmail.test"
    msg["Subject"] = "twenty MiB"
    msg.set_content(text, cte="8bit")
    t0 = time.monotonic()
    with sl.smtplib_client(lab, timeout=180) as s:
        s.ehlo("big.client.example")
        assert s.send_message(msg) == {}
        qid, data = s.last_qid, s.last_sent
    secs = time.monotonic() - t0
    assert len(data) > 20 * MiB
    assert qid, s.last_data_reply
    print(f"\n20 MiB message: {len(data)} bytes sent and acknowledged in "
          f"{secs:.2f} s")
    sl.assert_stored(lab, qid, data, mail_from="big@client.example",
                     rcpts=["carol@dpmail.test"])


def test_curl(lab, tmp_path):
    """curl smtp:// with -T: two recipients, leading dots."""
    data = body_8bit(12, tag="curl")
    f = tmp_path / "curl.eml"
    f.write_bytes(data)
    res = lab.run(["curl", "-sS", "-v", "--max-time", "30",
                   f"smtp://{DAEMON_IP}:25/curl.client.example",
                   "--mail-from", "curl@client.example",
                   "--mail-rcpt", "bob@dpmail.test",
                   "--mail-rcpt", "carol@dpmail.test",
                   "-T", str(f)], check=False, timeout=60)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    m = re.search(r"< 250 2\.0\.0 Ok: queued as ([0-9A-Z]{14})", out)
    assert m, out
    sl.assert_stored(lab, m.group(1), data, mail_from="curl@client.example",
                     rcpts=["bob@dpmail.test", "carol@dpmail.test"])


def test_bdat_chunks(lab):
    """CHUNKING (RFC 3030): chunks are taken as is, no dot-unstuffing,
    no end-of-data search; pipelined BDAT too; BDAT 0 LAST ends."""
    c1 = b"Subject: bdat\r\n\r\n.\r\n..not unstuffed\r\n"
    c2 = b"\r\n.\r\nstill the same message\r\n"
    c3 = b"caf\xc3\xa9 end\r\n"
    with sl.conn(lab) as c:
        kw = ehlo_keywords(c.ehlo())
        assert "CHUNKING" in kw, kw
        assert c.cmd("MAIL FROM:<bdat@client.example> BODY=8BITMIME").code \
            == 250
        assert c.cmd("RCPT TO:<alice@dpmail.test>").code == 250
        c.send(f"BDAT {len(c1)}\r\n".encode() + c1)
        r = c.reply()
        assert r.code == 250, r
        c.send(f"BDAT {len(c2)}\r\n".encode() + c2)
        assert c.reply().code == 250
        c.send(f"BDAT {len(c3)} LAST\r\n".encode() + c3)
        r = c.reply()
        assert r.code == 250 and r.qid, r
        qid1 = r.qid
        # everything pipelined in one write, ending with BDAT 0 LAST
        d1, d2 = b"Subject: piped\r\n\r\nabc\r\n", b"def\r\n.\r\n"
        c.send(b"MAIL FROM:<bdat2@client.example>\r\n"
               b"RCPT TO:<bob@dpmail.test>\r\n" +
               f"BDAT {len(d1)}\r\n".encode() + d1 +
               f"BDAT {len(d2)}\r\n".encode() + d2 + b"BDAT 0 LAST\r\n")
        rs = [c.reply() for _ in range(5)]
        assert [r.code for r in rs] == [250] * 5, rs
        qid2 = rs[-1].qid
        assert qid2, rs
        assert c.cmd("QUIT").code == 221
    msgs, dups, _ = sl.spool(lab)
    sl.assert_stored(lab, qid1, c1 + c2 + c3, msgs=msgs,
                     mail_from="bdat@client.example")
    sl.assert_stored(lab, qid2, d1 + d2, msgs=msgs, rcpts=["bob@dpmail.test"])


def test_pipelining_across_messages(lab):
    """RFC 2920 and 3030 pipelining across transactions: each end of data
    is followed in the same write by the next MAIL/RCPT/DATA; then whole
    BDAT transactions (which need no 354) back to back in one write.
    Every message gets its own 250 and queue ID, in order, stored
    exactly."""
    n = 12
    datas = [b"Subject: piped %d\r\n\r\n.%d\r\n" % (i, i) + b"z" * (i * 37)
             + b"\r\n" for i in range(n)]
    env = [("MAIL FROM:<p%d@client.example>\r\nRCPT TO:<alice@dpmail.test>"
            "\r\nDATA\r\n" % i).encode() for i in range(n)]
    qids = []
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        c.send(env[0])
        assert [c.reply().code for _ in range(3)] == [250, 250, 354]
        for i in range(n):
            wire = sc.dot_stuff(datas[i]) + b".\r\n"
            if i + 1 < n:
                wire += env[i + 1]
            c.send(wire)
            r = c.reply()
            assert r.code == 250 and r.qid, (i, r)
            qids.append(r.qid)
            if i + 1 < n:
                rs = [c.reply() for _ in range(3)]
                assert [x.code for x in rs] == [250, 250, 354], (i, rs)
        # BDAT: n whole transactions in one write
        wire = b""
        for i in range(n):
            wire += (b"MAIL FROM:<b%d@client.example>\r\n"
                     b"RCPT TO:<bob@dpmail.test>\r\n" % i)
            wire += b"BDAT %d LAST\r\n" % len(datas[i]) + datas[i]
        c.send(wire)
        for i in range(n):
            rs = [c.reply() for _ in range(3)]
            assert [x.code for x in rs] == [250, 250, 250] and rs[2].qid, \
                (i, rs)
            qids.append(rs[2].qid)
        assert c.cmd("QUIT").code == 221
    assert len(set(qids)) == 2 * n, qids
    msgs, dups, _ = sl.spool(lab)
    assert not dups
    for i, q in enumerate(qids):
        sl.assert_stored(lab, q, datas[i % n], msgs=msgs,
                         mail_from=f"{'pb'[i // n]}{i % n}@client.example")


def test_dsn_parameters(lab):
    """DSN (RFC 3461): RET, ENVID (xtext), NOTIFY, ORCPT kept in the
    envelope."""
    data = b"Subject: dsn\r\n\r\nbody\r\n"
    with sl.conn(lab) as c:
        assert "DSN" in ehlo_keywords(c.ehlo())
        r = c.cmd("MAIL FROM:<dsn@client.example> RET=HDRS ENVID=QQ+2B31+3D")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<alice@dpmail.test> NOTIFY=SUCCESS,FAILURE "
                  "ORCPT=rfc822;Alice+40dpmail.test")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<bob@dpmail.test> NOTIFY=NEVER")
        assert r.code == 250, r
        r = c.data(data)
        assert r.code == 250 and r.qid, r
        qid = r.qid
        # bad DSN syntax is refused, the session goes on
        r = c.cmd("MAIL FROM:<x@client.example> RET=SOMETIMES")
        assert 500 <= r.code < 600, r
        r = c.cmd("MAIL FROM:<x@client.example>")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<alice@dpmail.test> NOTIFY=NEVER,SUCCESS")
        assert 500 <= r.code < 600, r
    rec = sl.assert_stored(lab, qid, data)
    assert rec.get("envid") == "QQ+31=", rec
    assert rec.get("ret") == "hdrs", rec
    r0, r1 = sl.rcpt_objs(rec)
    assert r0.get("orcpt") == "rfc822;Alice@dpmail.test", r0
    assert sorted(r0.get("notify")) == ["failure", "success"], r0
    assert r1.get("notify") == ["never"], r1
    assert r1.get("orcpt") == "", r1


def test_every_byte_split(lab):
    """A whole transaction sent one byte per TCP segment (Nagle off):
    the parsers take any split, dot-stuffing across segments included."""
    data = b"Subject: split\r\n\r\n.\r\n..x\r\n.y\r\nend\r\n"
    wire = (b"EHLO split.example\r\nMAIL FROM:<split@client.example>\r\n"
            b"RCPT TO:<alice@dpmail.test>\r\nDATA\r\n")
    with sl.conn(lab) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(wire)):
            c.send(wire[i:i + 1])
            time.sleep(0.001)
        rs = [c.reply() for _ in range(4)]
        assert [r.code for r in rs] == [250, 250, 250, 354], rs
        body = sc.dot_stuff(data) + b".\r\n"
        for i in range(len(body)):
            c.send(body[i:i + 1])
            time.sleep(0.001)
        r = c.reply()
        assert r.code == 250 and r.qid, r
    sl.assert_stored(lab, r.qid, data)


def test_pipelined_flood_without_reading(lab):
    """20,000 pipelined NOOPs sent without reading a reply: every one is
    answered, in order, and the session goes on (the daemon stops
    reading while its replies pile up, it does not drop or mix them)."""
    n = 20000
    with sl.conn(lab, timeout=30) as c:
        assert c.ehlo().code == 250
        sender = threading.Thread(
            target=c.send, args=(b"".join(b"NOOP %d\r\n" % i
                                          for i in range(n)),))
        sender.start()
        got = [c.reply(timeout=30) for _ in range(n)]
        sender.join(30)
        assert all(r.code == 250 for r in got), \
            [r for r in got if r.code != 250][:5]
        r = simple_message(c, b"Subject: after\r\n\r\nok\r\n")
        assert r.code == 250, r


def test_sessions_freed(lab):
    """Sessions end in every way (QUIT, client FIN mid-DATA, client RST
    mid-DATA, FIN without QUIT), more of them from one address than
    max_conns_per_client (100): none is left counted, a new client is
    welcome, nothing half-sent is stored."""
    for i in range(120):
        with sl.conn(lab) as c:
            assert c.greeting.code == 220, (i, c.greeting)
            if i % 4 == 0:
                assert c.cmd("QUIT").code == 221
                assert c.closed(5)
                continue
            assert c.ehlo().code == 250
            assert c.cmd("MAIL FROM:<gone@client.example>").code == 250
            assert c.cmd("RCPT TO:<alice@dpmail.test>").code == 250
            if i % 4 == 1:
                continue                 # FIN without QUIT
            assert c.cmd("DATA").code == 354
            c.send(b"Subject: cut\r\n\r\nhalf a mess")
            if i % 4 == 3:              # RST
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack("ii", 1, 0))
    with sl.conn(lab) as c:
        assert c.greeting.code == 220, c.greeting

    def drained():
        cnt = lab.counters()
        return cnt if cnt.get("smtp.sessions_live") == 0 else None
    cnt = sl.wait_for(drained, 5, 0.2, "smtp.sessions_live to drop to 0")
    assert cnt.get("smtp.refused_per_client", 0) == 0, cnt
    msgs, _, _ = sl.spool(lab)
    assert not msgs, list(msgs)


# ---------------------------------------------------------------- replies

def test_vrfy_expn_unknown_user(lab):
    with sl.conn(lab) as c:
        assert c.greeting.code == 220 and HOST in c.greeting.text
        assert c.ehlo().code == 250
        for arg in ("alice", "nosuchuser", "alice@dpmail.test"):
            r = c.cmd(f"VRFY {arg}")
            assert r.code == 252, (arg, r)
        r = c.cmd("EXPN staff")
        assert r.code in (252, 502), r
        assert c.cmd("MAIL FROM:<a@client.example>").code == 250
        r = c.cmd("RCPT TO:<nosuchuser@dpmail.test>")
        assert r.code == 550 and r.text.startswith("5.1.1"), r
        for ok in ("alice@DPMAIL.TEST", "Bob@dpmail.test",
                   "alice+tag@dpmail.test", "postmaster@dpmail.test",
                   "Postmaster"):
            r = c.cmd(f"RCPT TO:<{ok}>")
            assert r.code == 250, (ok, r)
        assert c.cmd("QUIT").code == 221
        assert c.closed(5)


@pytest.mark.lab_config(smtp={"vrfy": "disabled"})
def test_vrfy_disabled(lab):
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        r = c.cmd("VRFY alice")
        assert r.code == 502, r


# ---------------------------------------------------------------- limits

LIMITS = {"max_message_size": 100000, "max_recipients": 100,
          "max_errors": 5}


@pytest.mark.lab_config(smtp=LIMITS)
def test_size_limit(lab):
    """SIZE advertised; SIZE= over it: 552 at MAIL; data over it: 552
    after the end; the session goes on; nothing oversize is stored."""
    small = b"Subject: small\r\n\r\nfits\r\n"
    big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 110
    with sl.conn(lab) as c:
        kw = ehlo_keywords(c.ehlo())
        assert kw.get("SIZE") == "SIZE 100000", kw
        r = c.cmd("MAIL FROM:<a@client.example> SIZE=100000")
        assert r.code == 250, r
        assert c.cmd("RSET").code == 250
        r = c.cmd("MAIL FROM:<a@client.example> SIZE=100001")
        assert r.code == 552 and r.text.startswith("5.3.4"), r
        r = simple_message(c, big)
        assert r.code == 552, r
        r = c.cmd("NOOP")
        assert r.code == 250, r
        r = simple_message(c, small)
        assert r.code == 250 and r.qid, r
        qid = r.qid
    msgs, _, _ = sl.spool(lab)
    assert list(msgs) == [qid], list(msgs)
    sl.assert_stored(lab, qid, small, msgs=msgs)


@pytest.mark.lab_config(smtp=LIMITS)
def test_bdat_limits(lab):
    """BDAT: chunks past max_message_size: 552 and the octets are read
    and dropped (the session goes on); RSET between chunks drops the
    message; DATA after a BDAT chunk is 503; nothing of these stored."""
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        assert c.cmd("MAIL FROM:<a@client.example>").code == 250
        assert c.cmd("RCPT TO:<alice@dpmail.test>").code == 250
        c.send(b"BDAT 60000\r\n" + b"x" * 60000)
        assert c.reply().code == 250
        c.send(b"BDAT 60000 LAST\r\n" + b"y" * 60000)
        r = c.reply()
        assert r.code == 552 and r.text.startswith("5.3.4"), r
        assert c.cmd("NOOP").code == 250
        assert c.cmd("MAIL FROM:<a@client.example>").code == 250
        assert c.cmd("RCPT TO:<alice@dpmail.test>").code == 250
        c.send(b"BDAT 5\r\nhello")
        assert c.reply().code == 250
        assert c.cmd("DATA").code == 503
        assert c.cmd("RSET").code == 250
        assert c.cmd("BDAT 0 LAST").code == 503
        assert c.cmd("QUIT").code == 221
    msgs, _, _ = sl.spool(lab)
    assert not msgs, list(msgs)


def test_mail_loop(lab):
    """More Received: headers than max_received (50): 554 5.4.6; 48 of
    them (49 with ours): accepted."""
    def hops(n):
        return b"".join(b"Received: from hop%d.example by x; "
                        b"Thu, 26 Nov 2026 10:00:00 +0000\r\n" % i
                        for i in range(n)) + b"Subject: hops\r\n\r\nx\r\n"
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        r = simple_message(c, hops(51))
        assert r.code == 554 and r.text.startswith("5.4.6"), r
        r = simple_message(c, hops(48))
        assert r.code == 250, r
    sl.assert_stored(lab, r.qid, hops(48))


@pytest.mark.lab_config(smtp=LIMITS)
def test_too_many_recipients(lab):
    """max_recipients = 100: the 101st RCPT gets 452 4.5.3, the message
    goes to the first 100."""
    data = b"Subject: many\r\n\r\nhi\r\n"
    rcpts = [f"alice+{i}@dpmail.test" for i in range(101)]
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        c.send("MAIL FROM:<many@client.example>\r\n" +
               "".join(f"RCPT TO:<{a}>\r\n" for a in rcpts))
        rs = [c.reply() for _ in range(102)]
        assert all(r.code == 250 for r in rs[:101]), \
            [r for r in rs[:101] if r.code != 250]
        assert rs[101].code == 452 and rs[101].text.startswith("4.5.3"), \
            rs[101]
        r = c.data(data)
        assert r.code == 250 and r.qid, r
    sl.assert_stored(lab, r.qid, data, rcpts=rcpts[:100])


@pytest.mark.lab_config(smtp=LIMITS)
def test_line_too_long(lab):
    """A command line over max_line (512): 500; a text line over
    max_text_line (1000) in DATA: refused after the end, nothing stored;
    the session survives both."""
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        r = c.cmd("NOOP " + "x" * 600)
        assert r.code == 500, r
        assert c.cmd("NOOP").code == 250
        r = c.cmd("MAIL FROM:<" + "a" * 520 + "@client.example>")
        assert r.code == 500, r
        r = simple_message(c, b"Subject: long\r\n\r\n" + b"z" * 1200 + b"\r\n")
        assert 500 <= r.code < 600, r
        assert c.cmd("NOOP").code == 250
        r = simple_message(c, b"Subject: ok\r\n\r\n" + b"z" * 998 + b"\r\n")
        assert r.code == 250, r
        qid = r.qid
    msgs, _, _ = sl.spool(lab)
    assert list(msgs) == [qid], list(msgs)


@pytest.mark.lab_config(smtp=LIMITS)
def test_max_errors(lab):
    """After max_errors (5) bad commands: 421 and the connection closes."""
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        codes = []
        for i in range(8):
            try:
                r = c.cmd(f"BOGUS{i}")
            except sc.SMTPError:
                break
            codes.append(r.code)
            if r.code == 421:
                break
        assert codes[-1] == 421, codes
        assert all(500 <= x < 600 for x in codes[:-1]), codes
        assert len(codes) in (5, 6), codes
        assert c.closed(5), "connection still open after 421"


@pytest.mark.lab_config(smtp=LIMITS)
def test_max_errors_pipelined(lab):
    """A pipelining client that hits max_errors while more of its commands
    are on the way still reads every reply up to the 421, then a clean
    close (FIN, not RST): the daemon lingers, reading and dropping."""
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        c.send(b"BOGUS\r\n" * 6 + b"NOOP\r\n" * 2000)
        codes = []
        for _ in range(6):
            codes.append(c.reply(timeout=10).code)
            if codes[-1] == 421:
                break
        assert codes == [502] * 5 + [421], codes
        assert c.closed(10), "no clean close after 421"
    deadline = time.monotonic() + 10
    while lab.counters()["smtp.sessions_live"] != 0:
        assert time.monotonic() < deadline, "the session was not freed"
        time.sleep(0.2)


@pytest.mark.lab_config(smtp={"command_timeout_s": 2})
def test_command_timeout(lab):
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        t0 = time.monotonic()
        r = c.reply(timeout=8)
        dt = time.monotonic() - t0
        assert r.code == 421 and r.text.startswith("4.4.2"), r
        assert 1.5 <= dt <= 5, dt
        assert c.closed(5)
    c = lab.counters()
    assert c.get("smtp.timeouts", 1) >= 1, {k: v for k, v in c.items()
                                            if k.startswith("smtp.")}


@pytest.mark.lab_config(smtp={"data_timeout_s": 2, "command_timeout_s": 60})
def test_data_timeout(lab):
    """Silence inside DATA: 421 4.4.2 after data_timeout_s, nothing
    stored."""
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        assert c.cmd("MAIL FROM:<a@client.example>").code == 250
        assert c.cmd("RCPT TO:<alice@dpmail.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: stalled\r\n\r\npart")
        t0 = time.monotonic()
        r = c.reply(timeout=10)
        assert r.code == 421, r
        assert 1.5 <= time.monotonic() - t0 <= 6
        assert c.closed(5)
    msgs, _, _ = sl.spool(lab)
    assert not msgs


@pytest.mark.lab_config(smtp={"min_data_rate": 2000, "data_rate_grace_s": 1,
                              "data_timeout_s": 60})
def test_min_data_rate(lab):
    """A sender trickling 40 bytes/s into DATA (under min_data_rate 2000
    after a 1 s grace) is cut off with 421; nothing stored."""
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        assert c.cmd("MAIL FROM:<slow@client.example>").code == 250
        assert c.cmd("RCPT TO:<alice@dpmail.test>").code == 250
        assert c.cmd("DATA").code == 354
        t0 = time.monotonic()
        r = None
        while time.monotonic() - t0 < 15:
            try:
                c.send(b"slow line\r\n")
            except OSError:
                break
            c.sock.settimeout(0.25)
            try:
                r = c.reply(timeout=0.25)
                break
            except (socket.timeout, TimeoutError):
                continue
            except sc.SMTPError:
                break
        dt = time.monotonic() - t0
        assert r is not None and r.code == 421, (r, dt)
        assert dt < 8, dt
        assert c.closed(5)
    msgs, _, _ = sl.spool(lab)
    assert not msgs


@pytest.mark.lab_config(smtp={"max_conns_per_client": 3})
def test_max_conns_per_client(lab):
    """The 4th connection from one address gets 421 4.7.0 and is closed;
    once one closes, a new one is welcome again."""
    cs = [sl.conn(lab) for _ in range(3)]
    try:
        assert all(c.greeting.code == 220 for c in cs)
        extra = sl.conn(lab)
        assert extra.greeting.code == 421 and \
            extra.greeting.text.startswith("4.7.0"), extra.greeting
        assert extra.closed(5)
        extra.close()
        assert cs[0].cmd("QUIT").code == 221
        assert cs[0].closed(5)
        cs[0].close()

        def welcome():
            c = sl.conn(lab)
            if c.greeting.code == 220:
                cs[0] = c
                return True
            c.close()
            return False
        sl.wait_for(welcome, 5, 0.2, "a new connection to be welcome")
    finally:
        for c in cs:
            c.close()


# ---------------------------------------------------------------- smuggling

EVIL = (b"MAIL FROM:<evil@attacker.example>\r\n"
        b"RCPT TO:<bob@dpmail.test>\r\n"
        b"DATA\r\n"
        b"From: <ceo@dpmail.test>\r\nSubject: smuggled\r\n\r\n"
        b"smuggled body\r\n")

SMUGGLE_ENDS = {"lf-dot-crlf": b"\n.\r\n", "crlf-dot-lf": b"\r\n.\n",
                "lf-dot-lf": b"\n.\n", "cr-dot-cr": b"\r.\r",
                "cr-dot-crlf": b"\r.\r\n"}


def smuggle(lab, fake_end):
    """One DATA whose body holds a fake end of data followed by a second
    transaction, then the real end. Returns (reply to the real end, the
    replies that followed before our NOOP's)."""
    outer = b"From: <a@client.example>\r\nSubject: outer\r\n\r\nouter body"
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        assert c.cmd("MAIL FROM:<a@client.example>").code == 250
        assert c.cmd("RCPT TO:<alice@dpmail.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(outer + fake_end + EVIL + b"\r\n.\r\n")
        r = c.reply()
        # the next reply must be the NOOP's: nothing else was answered
        n = c.cmd("NOOP")
        assert n.code == 250 and "2.0.0" in n.text, \
            f"extra replies after the end of data: {n}"
        assert c.cmd("QUIT").code == 221
    msgs, _, _ = sl.spool(lab)
    assert not any(m.get("mail_from") == "evil@attacker.example"
                   for m in msgs.values()), "smuggled message stored"
    return r, msgs


@pytest.mark.parametrize("name", list(SMUGGLE_ENDS))
def test_smuggling_rejected(lab, name):
    """bare_lf = reject: read on to the real end, then 550 5.6.11."""
    r, msgs = smuggle(lab, SMUGGLE_ENDS[name])
    assert r.code == 550 and r.text.startswith("5.6.11"), r
    assert not msgs, list(msgs)


@pytest.mark.lab_config(smtp={"bare_lf": "normalize"})
@pytest.mark.parametrize("name", ["lf-dot-crlf", "crlf-dot-lf", "lf-dot-lf"])
def test_smuggling_normalized(lab, name):
    """bare_lf = normalize: one message, the would-be second transaction
    stays inside it as text (bare LF stored as CRLF)."""
    r, msgs = smuggle(lab, SMUGGLE_ENDS[name])
    assert r.code == 250 and r.qid, r
    assert list(msgs) == [r.qid], list(msgs)
    data = sl.stored_data(msgs[r.qid])
    assert b"MAIL FROM:<evil@attacker.example>\r\n" in data, data
    assert b"smuggled body\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b""), data


# ---------------------------------------------------------------- relay

RELAY_PROBES = [
    "user@remote.example",
    "postmaster@remote.example",
    "user%remote.example@dpmail.test",
    "@dpmail.test:user@remote.example",
    "@mx.dpmail.test,@dpmail.test:user@remote.example",
    '"user@remote.example"@dpmail.test',
    "user@remote.example@dpmail.test",
    "user!remote.example@dpmail.test",
    "remote.example!user@dpmail.test",
    "user@[198.18.0.99]",
    "user@remote.example.",
    "user%remote.example@[198.18.0.2]",
]


@pytest.mark.lab_config(policy={"relay_domains": "relay.example"})
def test_open_relay_probes_refused(lab):
    """From 198.18.0.1 (not trusted) every relay probe is refused with a
    5xx; a relay_domains domain is accepted; nothing is queued for the
    refused ones."""
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        assert c.cmd("MAIL FROM:<probe@attacker.example>").code == 250
        bad = {}
        for a in RELAY_PROBES:
            r = c.cmd(f"RCPT TO:<{a}>")
            if not 500 <= r.code < 600:
                bad[a] = r
        assert not bad, f"relay probes not refused: {bad}"
        r = c.cmd("DATA")
        assert r.code in (503, 554), r
        assert c.cmd("RSET").code == 250
        assert c.cmd("MAIL FROM:<probe@attacker.example>").code == 250
        r = c.cmd("RCPT TO:<someone@relay.example>")
        assert r.code == 250, r
    msgs, _, _ = sl.spool(lab)
    assert not msgs


@pytest.mark.lab_config(policy={"trusted_networks": "198.18.0.0/24"})
def test_relay_from_trusted_network(lab):
    """With trusted_networks = 198.18.0.0/24 the kernel side may relay;
    routing through us by '%' or '!' is still refused."""
    data = b"Subject: relayed\r\n\r\nout\r\n"
    with sl.conn(lab) as c:
        assert c.ehlo().code == 250
        assert c.cmd("MAIL FROM:<inside@dpmail.test>").code == 250
        r = c.cmd("RCPT TO:<user@remote.example>")
        assert r.code == 250, r
        for a in ("user%remote.example@dpmail.test",
                  "user!remote.example@dpmail.test"):
            r = c.cmd(f"RCPT TO:<{a}>")
            assert 500 <= r.code < 600, (a, r)
        r = c.data(data)
        assert r.code == 250 and r.qid, r
    sl.assert_stored(lab, r.qid, data, rcpts=["user@remote.example"])
