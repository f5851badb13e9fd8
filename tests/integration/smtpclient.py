#!/usr/bin/python3
"""SMTP clients for the lab and the accept benchmark: kernel sockets in a
lab namespace talking to dpmaild (or to any SMTP server).

Owns: sockets it creates in a named network namespace (`ns_socket`: a
helper thread per namespace does setns(2) once and creates sockets there;
a socket keeps its namespace for life, so the caller's threads never
switch), a blocking client for scripted dialogues (`Conn`), smtplib bound
to a namespace (`NsSMTP`), the spool reader (`spool_dump`, over
`dpmailctl spool dump --json --body`), and an asyncio load generator
(`run_load`) that records, for every message, the queue ID the 250 named
and the SHA-256 of the data it sent, so a test can check the spool byte
for byte.

As a command (run inside a namespace with `ip netns exec`, or given
--netns), `load` runs the generator and prints one JSON line:

    smtpclient.py load --host 198.18.0.2 --sessions 32 --messages 2000 \\
        --per-conn 100 --size 2048 [--record acks.jsonl] [--seconds T]

Must never: connect anywhere but the host it is given (the lab's
198.18.0.2, or 127.0.0.1 for benchmark baselines).
"""

import argparse
import asyncio
import base64
import ctypes
import hashlib
import json
import os
import queue
import random
import re
import smtplib
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

CLONE_NEWNET = 0x40000000
QUEUED_RE = re.compile(rb"^250 2\.0\.0 Ok: queued as ([0-9A-Z]{14})\s*$")
QID_RE = re.compile(r"queued as ([0-9A-Z]{14})")
CRLF = b"\r\n"


class SMTPError(Exception):
    pass


# ---------------------------------------------------------------- netns

_libc = ctypes.CDLL(None, use_errno=True)
_NS_THREADS = {}
_NS_LOCK = threading.Lock()


class _NsThread:
    """A daemon thread living in namespace `ns`, creating sockets on
    request. setns(CLONE_NEWNET) only moves the calling thread."""

    def __init__(self, ns):
        self.ns = ns
        self.q = queue.Queue()
        ready = queue.Queue()
        self.t = threading.Thread(target=self._main, args=(ready,),
                                  daemon=True, name=f"netns-{ns}")
        self.t.start()
        err = ready.get()
        if err:
            raise err

    def _main(self, ready):
        try:
            fd = os.open(f"/var/run/netns/{self.ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({self.ns}): {os.strerror(e)}")
            finally:
                os.close(fd)
        except BaseException as e:     # reported to the creator
            ready.put(e)
            return
        ready.put(None)
        while True:
            fn, out = self.q.get()
            try:
                out.put((True, fn()))
            except BaseException as e:
                out.put((False, e))

    def call(self, fn):
        out = queue.Queue()
        self.q.put((fn, out))
        ok, val = out.get()
        if not ok:
            raise val
        return val


def ns_socket(ns, family=socket.AF_INET, kind=socket.SOCK_STREAM):
    """A new socket in network namespace `ns` (None: our own)."""
    if ns is None:
        return socket.socket(family, kind)
    with _NS_LOCK:
        t = _NS_THREADS.get(ns)
        if t is None:
            t = _NS_THREADS[ns] = _NsThread(ns)
    return t.call(lambda: socket.socket(family, kind))


def ns_connect(ns, host, port, timeout=10.0):
    s = ns_socket(ns)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


# ---------------------------------------------------------------- replies

class Reply:
    """One SMTP reply: code, lines (text after the code), raw bytes."""

    def __init__(self, lines):
        self.raw = lines
        self.code = int(lines[-1][:3])
        self.lines = [l[4:].decode("utf-8", "replace") for l in lines]

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def qid(self):
        m = QID_RE.search(self.text)
        return m.group(1) if m else None

    def __repr__(self):
        return f"<{self.code} {self.text!r}>"


class ReplyReader:
    """Splits a byte stream into replies (multi-line ones joined)."""

    def __init__(self):
        self.buf = b""
        self.pending = []

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                return out
            line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
            line = line.rstrip(b"\r\n")
            if len(line) < 3 or not line[:3].isdigit():
                raise SMTPError(f"malformed reply line {line!r}")
            self.pending.append(line)
            if len(line) == 3 or line[3:4] != b"-":
                out.append(Reply(self.pending))
                self.pending = []


class Conn:
    """A blocking SMTP client for scripted dialogues: send anything, read
    replies one by one, see the server close."""

    def __init__(self, ns, host, port=25, timeout=10.0, greet=True):
        self.sock = ns_connect(ns, host, port, timeout)
        self.timeout = timeout
        self.rd = ReplyReader()
        self.replies = []
        self.eof = False
        self.greeting = self.reply() if greet else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return
        self.replies += self.rd.feed(data)

    def reply(self, timeout=None):
        """The next reply; SMTPError if the server closed first."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.replies:
            if self.eof:
                raise SMTPError("connection closed by the server")
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no reply")
            self._fill(left)
        return self.replies.pop(0)

    def cmd(self, line, timeout=None):
        self.send(line if line.endswith("\r\n") else line + "\r\n")
        return self.reply(timeout)

    def ehlo(self, name="client.example"):
        return self.cmd(f"EHLO {name}")

    def data(self, payload, timeout=None):
        """DATA with `payload` (unstuffed; CRLF lines, one is added at the
        end if missing) -> the final reply."""
        r = self.cmd("DATA")
        if r.code != 354:
            return r
        if payload and not payload.endswith(CRLF):
            payload += CRLF
        self.send(dot_stuff(payload) + b".\r\n")
        return self.reply(timeout)

    def closed(self, timeout=5.0):
        """Reads (and keeps replies) until the server closes; True if it
        did within `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._fill(left)
            except socket.timeout:
                return False
            except OSError:
                self.eof = True
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class NsSMTP(smtplib.SMTP):
    """smtplib.SMTP whose socket lives in a lab namespace."""

    def __init__(self, ns, *a, **kw):
        self._ns = ns
        super().__init__(*a, **kw)

    last_data_reply = None
    last_sent = None

    def _get_socket(self, host, port, timeout):
        return ns_connect(self._ns, host, port,
                          timeout if timeout is not None else 30.0)

    def data(self, msg):
        """Also keeps the data as sent (before dot-stuffing, as the server
        must store it) and the reply (which names the queue ID)."""
        b = smtplib._fix_eols(msg).encode("ascii") if isinstance(msg, str) \
            else bytes(msg)
        if not b.endswith(CRLF):
            b += CRLF
        self.last_sent = b
        self.last_data_reply = r = super().data(msg)
        return r

    @property
    def last_qid(self):
        if not self.last_data_reply:
            return None
        m = QID_RE.search(self.last_data_reply[1].decode("utf-8", "replace"))
        return m.group(1) if m else None


# ---------------------------------------------------------------- messages

def dot_stuff(data):
    """RFC 5321 4.5.2 transparency for CRLF-ended `data`."""
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def make_message(tag, seq, size, rng=None, sender="load@client.example",
                 rcpt="alice@dpmail.test"):
    """A deterministic message of about `size` bytes, CRLF lines, with
    some lines starting with '.' (dot-stuffing), 8-bit bytes and a unique
    Message-Id <seq.tag@lab>."""
    rng = rng or random.Random(f"{tag}-{seq}")
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\n"
            f"Subject: load {tag} {seq}\r\n"
            f"Message-Id: <{seq}.{tag}@lab.example>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8"
            f"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n").encode()
    parts = [head]
    n = len(head)
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 "
    i = 0
    while n < size:
        i += 1
        w = min(rng.randint(20, 76), max(1, size - n - 2))
        line = bytes(rng.choice(alphabet) for _ in range(w))
        if i % 7 == 0:
            line = b"." + line[1:]
        if i % 11 == 0:
            line = "h\u00e9llo \u00fcber ".encode() + line
        parts.append(line + CRLF)
        n += len(line) + 2
    return b"".join(parts)


def fast_message(tag, seq, size, sender="load@client.example",
                 rcpt="alice@dpmail.test"):
    """Like make_message but cheap (a repeated block), for load."""
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\n"
            f"Subject: load {tag} {seq}\r\n"
            f"Message-Id: <{seq}.{tag}@lab.example>\r\n\r\n").encode()
    line = (f"{seq:08d} the quick brown fox jumps over the lazy dog "
            f"\u00e9\u00fc 0123456789\r\n").encode()
    body = (line * (max(0, size - len(head)) // len(line) + 1))
    body = body[:max(0, size - len(head))]
    if not body.endswith(CRLF):
        body = body[:-2] + CRLF if len(body) >= 2 else b""
    return head + b".dot line\r\n" + body


# ---------------------------------------------------------------- spool

def strip_received(body):
    """The client's data: the stored body minus our Received: header (its
    first line and its continuation lines)."""
    if not body.startswith(b"Received:"):
        raise SMTPError(f"stored body does not start with Received: "
                        f"{body[:80]!r}")
    pos = body.index(CRLF) + 2
    while body[pos:pos + 1] in (b" ", b"\t"):
        pos = body.index(CRLF, pos) + 2
    return body[pos:]


def dpmailctl_binary():
    if os.environ.get("DPMAILCTL"):
        return Path(os.environ["DPMAILCTL"])
    import lab as labmod
    return labmod.daemon_binary().parent / "dpmailctl"


def spool_dump(spool_dir, body=True, timeout=120):
    """`dpmailctl spool dump DIR --json [--body]` (read-only, safe while
    the daemon runs) as a dict: "messages" (each with "qid", "mail_from"
    and "rcpt" added as aliases of "queue_id", "sender" and
    "recipients", and "body_bytes", the body decoded, with --body),
    "bad_records", "summary". Exit 1 (bad records: a torn tail, or a
    record being written while we read) still returns the dump."""
    cmd = [str(dpmailctl_binary()), "spool", "dump", str(spool_dir), "--json"]
    if body:
        cmd.append("--body")
    res = subprocess.run(cmd, capture_output=True, timeout=timeout)
    text = res.stdout.decode("utf-8", "surrogateescape")
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if res.returncode not in (0, 1) or obj is None:
        raise SMTPError(f"{' '.join(cmd)} failed ({res.returncode}): "
                        f"{res.stderr.decode(errors='replace')[-2000:]}"
                        f"{text[:500]}")
    for r in obj.get("messages", []):
        r["qid"] = r.get("queue_id")
        r["mail_from"] = r.get("sender")
        r["rcpt"] = r.get("recipients", [])
        if "body_base64" in r:
            r["body_bytes"] = base64.b64decode(r["body_base64"])
        elif "body" in r:
            r["body_bytes"] = r["body"].encode("utf-8", "surrogateescape")
    return obj


def spool_messages(spool_dir, body=True):
    """({qid: message}, [queue IDs seen twice], the whole dump)."""
    obj = spool_dump(spool_dir, body=body)
    msgs, dups = {}, []
    for r in obj.get("messages", []):
        q = r["qid"]
        if q in msgs:
            dups.append(q)
        msgs[q] = r
    return msgs, dups, obj


def check_acks(acks, msgs):
    """Compare the client's acknowledged messages with the spool.
    `acks`: [{"qid", "sha", "len"}...]. Returns a report dict."""
    missing, mismatch = [], []
    for a in acks:
        r = msgs.get(a["qid"])
        if r is None:
            missing.append(a["qid"])
            continue
        body = r.get("body_bytes")
        if body is None:
            mismatch.append((a["qid"], "no body in dump"))
            continue
        data = strip_received(body)
        if sha256(data) != a["sha"]:
            mismatch.append((a["qid"], f"sha differs: stored {len(data)} "
                             f"bytes, sent {a.get('len')}"))
    acked = {a["qid"] for a in acks}
    return {"acked": len(acks), "acked_unique_qids": len(acked),
            "missing": missing, "mismatch": mismatch,
            "spool_messages": len(msgs),
            "unacked_in_spool": sorted(set(msgs) - acked)}


# ---------------------------------------------------------------- load

class LoadStats:
    def __init__(self):
        self.acked = 0
        self.tempfail = 0
        self.permfail = 0
        self.in_flight_lost = 0     # DATA sent, connection died before reply
        self.conn_errors = 0
        self.sessions = 0
        self.closed_421 = 0         # sessions the server ended with 421
        self.lat = []               # seconds, end of data -> 250
        self.codes = {}
        self.errors = []            # connection and session failures
        self.rejects = []           # refused transactions


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


async def _read_reply(reader, rd, pending, timeout):
    while not pending:
        data = await asyncio.wait_for(reader.read(65536), timeout)
        if not data:
            raise ConnectionResetError("server closed")
        pending += rd.feed(data)
    return pending.pop(0)


async def _bdat_pipelined(cfg, counter, stats, record, stop, reader, writer,
                          rd, pending, inflight):
    """Whole transactions (MAIL, RCPT, BDAT n LAST + data) written back to
    back, up to cfg.bdat_depth ahead of their replies (RFC 3030 needs no
    354, so a client may pipeline entire messages). Returns True when the
    server ended the session with 421."""
    outstanding = []
    n = 0
    nrep = 1 + len(cfg.rcpts) + 1         # MAIL, each RCPT, BDAT
    while True:
        while (len(outstanding) < cfg.bdat_depth and n < cfg.per_conn
               and not stop.is_set() and counter[0] < cfg.messages):
            seq = counter[0]
            counter[0] += 1
            n += 1
            data = cfg.body(seq)
            wire = (f"MAIL FROM:<{cfg.sender}> SIZE={len(data)}\r\n" +
                    "".join(f"RCPT TO:<{a}>\r\n" for a in cfg.rcpts) +
                    f"BDAT {len(data)} LAST\r\n").encode() + data
            writer.write(wire)
            await writer.drain()
            inflight.add(seq)
            outstanding.append((seq, data, time.monotonic()))
        if not outstanding:
            return False
        seq, data, t0 = outstanding.pop(0)
        rs = [await _read_reply(reader, rd, pending, cfg.data_timeout)
              for _ in range(nrep)]
        inflight.discard(seq)
        r = rs[-1]
        code = next((x.code for x in rs if x.code >= 400), r.code)
        stats.codes[code] = stats.codes.get(code, 0) + 1
        if code == 250:
            stats.acked += 1
            if record is not None:
                record({"seq": seq, "qid": r.qid, "sha": sha256(data),
                        "len": len(data), "bdat": True})
        else:
            if code >= 500:
                stats.permfail += 1
            else:
                stats.tempfail += 1
            if len(stats.rejects) < 20:
                stats.rejects.append(f"bdat: {rs}")
            if any(x.code == 421 for x in rs):
                for q, _, _ in outstanding:
                    inflight.discard(q)
                    stats.in_flight_lost += 1
                    if record is not None:
                        record({"seq": q, "lost": True})
                return True


async def _session(cfg, counter, stats, record, stop, idx=0):
    """One client session loop: connect, EHLO, up to per_conn messages
    (MAIL/RCPT/DATA pipelined when offered), QUIT; again while messages
    are left (also after a 421). Any connection error: count, and with
    cfg.retry back off and reconnect, else end this session loop."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        if counter[0] >= cfg.messages:
            return
        try:
            sock = ns_socket(cfg.netns)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, (cfg.host,
                                                            cfg.port)),
                                   cfg.timeout)
            reader, writer = await asyncio.open_connection(sock=sock)
        except (OSError, asyncio.TimeoutError) as e:
            stats.conn_errors += 1
            if len(stats.errors) < 20:
                stats.errors.append(f"connect: {e!r}")
            try:
                sock.close()
            except Exception:
                pass
            if not cfg.retry:
                return
            await asyncio.sleep(0.05 + random.random() * 0.2)
            continue
        stats.sessions += 1
        rd, pending = ReplyReader(), []
        inflight = set()
        closed = False
        try:
            r = await _read_reply(reader, rd, pending, cfg.timeout)
            if r.code != 220:
                raise SMTPError(f"greeting {r}")
            writer.write(f"EHLO {cfg.helo}\r\n".encode())
            r = await _read_reply(reader, rd, pending, cfg.timeout)
            if r.code != 250:
                raise SMTPError(f"EHLO {r}")
            pipelining = any(l.upper().startswith("PIPELINING")
                             for l in r.lines[1:]) and not cfg.no_pipelining
            n = 0
            chunking = any(l.upper().startswith("CHUNKING")
                           for l in r.lines[1:])
            if cfg.bdat_depth and idx % 2 == 1 and chunking:
                closed = await _bdat_pipelined(cfg, counter, stats, record,
                                               stop, reader, writer, rd,
                                               pending, inflight)
                n = cfg.per_conn
            while n < cfg.per_conn and not stop.is_set():
                seq = counter[0]
                if seq >= cfg.messages:
                    break
                counter[0] += 1
                n += 1
                data = cfg.body(seq)
                rcpts = cfg.rcpts
                cmds = [f"MAIL FROM:<{cfg.sender}> SIZE={len(data)}\r\n"] + \
                       [f"RCPT TO:<{a}>\r\n" for a in rcpts] + ["DATA\r\n"]
                if pipelining:
                    writer.write("".join(cmds).encode())
                    replies = [await _read_reply(reader, rd, pending,
                                                 cfg.timeout)
                               for _ in cmds]
                else:
                    replies = []
                    for c in cmds:
                        writer.write(c.encode())
                        replies.append(await _read_reply(reader, rd, pending,
                                                         cfg.timeout))
                        if replies[-1].code >= 400:
                            break
                last = replies[-1]
                if last.code != 354:
                    code = next(x.code for x in replies if x.code >= 400)
                    stats.codes[code] = stats.codes.get(code, 0) + 1
                    if code >= 500:
                        stats.permfail += 1
                    else:
                        stats.tempfail += 1
                    if len(stats.rejects) < 20:
                        stats.rejects.append(f"envelope: {replies}")
                    if any(x.code == 421 for x in replies):
                        closed = True
                        break
                    writer.write(b"RSET\r\n")
                    if (await _read_reply(reader, rd, pending,
                                          cfg.timeout)).code == 421:
                        closed = True
                        break
                    continue
                writer.write(dot_stuff(data))
                await writer.drain()
                inflight.add(seq)
                t0 = time.monotonic()
                writer.write(b".\r\n")
                r = await _read_reply(reader, rd, pending, cfg.data_timeout)
                dt = time.monotonic() - t0
                inflight.discard(seq)
                stats.codes[r.code] = stats.codes.get(r.code, 0) + 1
                if r.code == 250:
                    stats.acked += 1
                    stats.lat.append(dt)
                    if record is not None:
                        record({"seq": seq, "qid": r.qid, "sha": sha256(data),
                                "len": len(data), "lat_ms": round(dt * 1e3, 3)})
                else:
                    if r.code >= 500:
                        stats.permfail += 1
                    else:
                        stats.tempfail += 1
                    if record is not None and cfg.record_failures:
                        record({"seq": seq, "code": r.code, "text": r.text})
                    if r.code == 421:
                        closed = True
                        break
            if closed:
                # 421: the server closes; a new session takes over
                stats.closed_421 += 1
            else:
                writer.write(b"QUIT\r\n")
                try:
                    await _read_reply(reader, rd, pending, cfg.timeout)
                except (ConnectionError, asyncio.TimeoutError, OSError):
                    pass
        except (ConnectionError, asyncio.TimeoutError, OSError,
                SMTPError, asyncio.IncompleteReadError) as e:
            stats.conn_errors += 1
            for q in sorted(inflight):
                stats.in_flight_lost += 1
                if record is not None:
                    record({"seq": q, "lost": True})
            if len(stats.errors) < 20:
                stats.errors.append(f"session: {e!r}")
            if not cfg.retry:
                return
            await asyncio.sleep(0.05 + random.random() * 0.2)
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 2)
            except Exception:
                pass


class LoadConfig:
    def __init__(self, **kw):
        self.netns = None
        self.host = "198.18.0.2"
        self.port = 25
        self.sessions = 8
        self.messages = 100
        self.per_conn = 1
        self.size = 2048
        self.sender = "load@client.example"
        self.rcpts = ["alice@dpmail.test"]
        self.helo = "client.example"
        self.timeout = 15.0
        self.data_timeout = 30.0
        self.retry = False
        self.seconds = None
        self.tag = f"{os.getpid()}x{int(time.time())}"
        self.record_failures = False
        self.no_pipelining = False
        # > 0: every other session sends whole BDAT transactions, this
        # many ahead of their replies
        self.bdat_depth = 0
        self.body = None
        for k, v in kw.items():
            if not hasattr(self, k):
                raise TypeError(f"unknown load option {k}")
            setattr(self, k, v)
        if self.body is None:
            tag, size, snd, rc = self.tag, self.size, self.sender, \
                self.rcpts[0]
            self.body = lambda seq: fast_message(tag, seq, size, snd, rc)


async def _run_load(cfg, record, stop):
    stats = LoadStats()
    counter = [0]
    t0 = time.monotonic()
    tasks = [asyncio.create_task(_session(cfg, counter, stats, record, stop,
                                          i))
             for i in range(cfg.sessions)]
    if cfg.seconds:
        async def timer():
            await asyncio.sleep(cfg.seconds)
            stop.set()
        tt = asyncio.create_task(timer())
    await asyncio.gather(*tasks)
    if cfg.seconds:
        tt.cancel()
    return stats, time.monotonic() - t0


def run_load(cfg, record=None, stop_event=None):
    """Runs the load to the end (all messages, or cfg.seconds, or
    stop_event set from another thread); returns the summary dict."""
    async def main():
        stop = asyncio.Event()
        if stop_event is not None:
            async def watch():
                while not stop_event.is_set():
                    await asyncio.sleep(0.05)
                stop.set()
            w = asyncio.create_task(watch())
        res = await _run_load(cfg, record, stop)
        if stop_event is not None:
            w.cancel()
        return res
    stats, secs = asyncio.run(main())
    return summary(stats, secs, cfg)


def summary(stats, secs, cfg):
    lat = stats.lat
    return {
        "sessions": cfg.sessions, "messages": cfg.messages,
        "per_conn": cfg.per_conn, "size": cfg.size,
        "acked": stats.acked, "tempfail": stats.tempfail,
        "permfail": stats.permfail, "in_flight_lost": stats.in_flight_lost,
        "conn_errors": stats.conn_errors, "smtp_sessions": stats.sessions,
        "closed_421": stats.closed_421,
        "codes": {str(k): v for k, v in sorted(stats.codes.items())},
        "seconds": round(secs, 3),
        "msgs_per_s": round(stats.acked / secs, 1) if secs else None,
        "lat_p50_ms": _ms(percentile(lat, 50)),
        "lat_p99_ms": _ms(percentile(lat, 99)),
        "lat_max_ms": _ms(max(lat) if lat else None),
        "lat_mean_ms": _ms(statistics.mean(lat) if lat else None),
        "errors": stats.errors[:10],
        "rejects": stats.rejects[:5],
    }


def _ms(x):
    return None if x is None else round(x * 1e3, 3)


# ---------------------------------------------------------------- CLI

def main():
    ap = argparse.ArgumentParser(description="SMTP load client")
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("load")
    p.add_argument("--netns")
    p.add_argument("--host", default="198.18.0.2")
    p.add_argument("--port", type=int, default=25)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--messages", type=int, default=100)
    p.add_argument("--per-conn", type=int, default=1)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--rcpt", action="append")
    p.add_argument("--sender", default="load@client.example")
    p.add_argument("--seconds", type=float)
    p.add_argument("--retry", action="store_true",
                   help="reconnect after errors (crash tests)")
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--record", help="append one JSON line per message")
    p.add_argument("--stop-file",
                   help="stop (finish the message in hand) once it exists")
    p.add_argument("--tag")
    p.add_argument("--bdat-depth", type=int, default=0,
                   help="every other session pipelines whole BDAT "
                        "transactions this deep")
    a = ap.parse_args()
    cfg = LoadConfig(netns=a.netns, host=a.host, port=a.port,
                     sessions=a.sessions, messages=a.messages,
                     per_conn=a.per_conn, size=a.size,
                     rcpts=a.rcpt or ["alice@dpmail.test"], sender=a.sender,
                     seconds=a.seconds, retry=a.retry, timeout=a.timeout,
                     data_timeout=max(a.timeout, 30.0),
                     bdat_depth=a.bdat_depth,
                     **({"tag": a.tag} if a.tag else {}))
    fh = open(a.record, "a", buffering=1) if a.record else None
    record = (lambda obj: fh.write(json.dumps(obj) + "\n")) if fh else None
    stop_event = None
    if a.stop_file:
        stop_event = threading.Event()

        def watch():
            while not os.path.exists(a.stop_file):
                time.sleep(0.05)
            stop_event.set()
        threading.Thread(target=watch, daemon=True).start()
    res = run_load(cfg, record, stop_event)
    if fh:
        fh.close()
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
