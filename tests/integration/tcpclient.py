#!/usr/bin/python3
"""Kernel-side TCP clients for the TCP lab tests, run *inside* a lab
namespace:

    ip netns exec NS /usr/bin/python3 tcpclient.py echo --port 7 --bytes N
    ... discard --port 9 --bytes N
    ... many --port 7 --conns 10000 --hold 30
    ... cycles --port 7 --cycles 5000

Each mode prints one JSON object on its last stdout line (`many` also prints
an `ESTABLISHED <n>` line once every connection is up, and may wait for a
`go` line on stdin). Exit status 0 means the mode's own checks passed
(byte-exact echo, every connection served); the JSON says what went wrong
otherwise.

Data: a random block of an odd length (not a multiple of any segment size)
sent cyclically, so a lost, duplicated or misplaced segment changes the
received stream; received and sent streams are compared by length and
sha256.

Must never: connect anywhere but the daemon address given (198.18.0.2 by
default).
"""

import argparse
import errno
import faulthandler
import hashlib
import json
import os
import resource
import selectors
import socket
import sys
import threading
import time

DAEMON_IP = "198.18.0.2"
BLOCK = os.urandom((4 << 20) + 4099)
CHUNK = 256 * 1024


def out(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def stream_chunks(total):
    """Yield memoryviews of the cyclic stream, `total` bytes in all."""
    view = memoryview(BLOCK)
    pos, left = 0, total
    while left > 0:
        n = min(CHUNK, left, len(BLOCK) - pos)
        yield view[pos:pos + n]
        left -= n
        pos = (pos + n) % len(BLOCK)


def connect(host, port, timeout):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def mode_echo(a):
    s = connect(a.host, a.port, a.timeout)
    s.settimeout(a.timeout)
    sent_h, recv_h = hashlib.sha256(), hashlib.sha256()
    err = {}

    def sender():
        sent = 0
        try:
            for c in stream_chunks(a.bytes):
                s.sendall(c)
                sent_h.update(c)
                sent += len(c)
                if a.rate:              # pace to a.rate MB/s
                    ahead = t0 + sent / (a.rate * 1e6) - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err["send"] = repr(e)

    t0 = time.monotonic()
    th = threading.Thread(target=sender, daemon=True)
    th.start()
    got = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    eof = False
    try:
        while True:
            n = s.recv_into(buf)
            if n == 0:
                eof = True
                break
            recv_h.update(view[:n])
            got += n
    except OSError as e:
        err["recv"] = repr(e)
    dt = time.monotonic() - t0
    th.join(timeout=a.timeout)
    s.close()
    res = {"mode": "echo", "bytes": a.bytes, "received": got, "eof": eof,
           "seconds": round(dt, 3), "t_start": t0, "t_end": t0 + dt,
           "mb_per_s": round(got / dt / 1e6, 1) if dt > 0 else None,
           "sent_sha256": sent_h.hexdigest(),
           "recv_sha256": recv_h.hexdigest(), "errors": err}
    res["ok"] = (got == a.bytes and eof and not err
                 and res["sent_sha256"] == res["recv_sha256"])
    out(res)
    return 0 if res["ok"] else 1


def mode_discard(a):
    s = connect(a.host, a.port, a.timeout)
    err = {}
    t0 = time.monotonic()
    sent = 0
    try:
        for c in stream_chunks(a.bytes):
            s.sendall(c)
            sent += len(c)
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        err["send"] = repr(e)
    t_sent = time.monotonic() - t0
    extra, eof = 0, False
    try:
        while True:
            d = s.recv(65536)
            if not d:
                eof = True
                break
            extra += len(d)
    except OSError as e:
        err["recv"] = repr(e)
    dt = time.monotonic() - t0
    s.close()
    res = {"mode": "discard", "bytes": a.bytes, "sent": sent,
           "seconds_to_send": round(t_sent, 3), "seconds": round(dt, 3),
           "mb_per_s": round(sent / dt / 1e6, 1) if dt > 0 else None,
           "eof": eof, "unexpected_bytes": extra, "errors": err}
    res["ok"] = sent == a.bytes and eof and not extra and not err
    out(res)
    return 0 if res["ok"] else 1


def raise_nofile(n):
    """Room for n sockets (root may raise the hard limit too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            except (ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def open_many(a, sel):
    """Non-blocking connects, at most a.inflight handshakes at a time.
    Returns (connected sockets, failures)."""
    pending = {}
    conns, fails = [], []
    started = 0
    deadline = time.monotonic() + a.timeout
    while len(conns) + len(fails) < a.conns:
        while started < a.conns and len(pending) < a.inflight:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((a.host, a.port))
            if rc not in (0, errno.EINPROGRESS):
                fails.append(os.strerror(rc))
                s.close()
            else:
                pending[s.fileno()] = s
                sel.register(s, selectors.EVENT_WRITE)
            started += 1
        if time.monotonic() > deadline:
            fails += ["connect timeout"] * len(pending)
            for s in pending.values():
                sel.unregister(s)
                s.close()
            break
        for key, _ in sel.select(timeout=1.0):
            s = pending.pop(key.fd)
            sel.unregister(s)
            rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if rc:
                fails.append(os.strerror(rc))
                s.close()
            else:
                conns.append(s)
    return conns, fails


def echo_all(a, sel, conns):
    """Every connection sends a.msg bytes and reads them back."""
    state = {}
    for i, s in enumerate(conns):
        msg = (b"%08d:" % i + BLOCK[i % 4096:i % 4096 + a.msg])[:a.msg]
        s.send(msg)         # small, fits any send buffer
        state[s.fileno()] = (s, msg, bytearray())
        sel.register(s, selectors.EVENT_READ)
    ok, bad = 0, []
    deadline = time.monotonic() + a.timeout
    while state and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            s, msg, got = state[key.fd]
            try:
                d = s.recv(65536)
            except OSError as e:
                d, err = None, repr(e)
            if not d:
                bad.append(err if d is None else "eof before echo")
            else:
                got += d
                if len(got) < len(msg):
                    continue
                if bytes(got) == msg:
                    ok += 1
                else:
                    bad.append("wrong bytes")
            sel.unregister(s)
            del state[key.fd]
    bad += ["echo timeout"] * len(state)
    for s, _, _ in state.values():
        sel.unregister(s)
    return ok, bad


def peer_state(conns):
    """What each still-open connection sees now, without blocking:
    open (nothing pending), eof (FIN), reset, data."""
    seen = {}
    for s in conns:
        try:
            d = s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK)
            k = "data" if d else "eof"
        except BlockingIOError:
            k = "open"
        except ConnectionResetError:
            k = "reset"
        except OSError as e:
            k = errno.errorcode.get(e.errno, str(e.errno))
        seen[k] = seen.get(k, 0) + 1
    return seen


def mode_many(a):
    lim = raise_nofile(a.conns)
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    conns, fails = open_many(a, sel)
    t_open = time.monotonic() - t0
    sys.stdout.write(f"ESTABLISHED {len(conns)} {len(fails)} {t_open:.3f}\n")
    sys.stdout.flush()
    res = {"mode": "many", "conns": a.conns, "established": len(conns),
           "connect_failures": len(fails),
           "connect_failure_kinds": sorted(set(fails))[:5],
           "seconds_to_open": round(t_open, 3), "nofile": list(lim)}
    if a.wait_stdin:
        line = sys.stdin.readline().strip()
        res["peer_state_before_go"] = peer_state(conns)
        if line != "go":         # EOF or "quit": just report and close
            for s in conns:
                s.close()
            res["ok"] = not fails
            out(res)
            return 0 if res["ok"] else 1
    elif a.hold:
        time.sleep(a.hold)
    res["peer_state_after_hold"] = peer_state(conns)
    t1 = time.monotonic()
    ok, bad = echo_all(a, sel, conns)
    res.update(echo_ok=ok, echo_failures=len(bad),
               echo_failure_kinds=sorted(set(bad))[:5],
               seconds_to_echo=round(time.monotonic() - t1, 3))
    for s in conns:
        s.close()
    res["ok"] = not fails and ok == a.conns
    out(res)
    return 0 if res["ok"] else 1


def mode_cycles(a):
    msg = BLOCK[:a.msg]
    lock = threading.Lock()
    done = {"ok": 0, "fail": 0, "kinds": set()}
    per = [a.cycles // a.parallel + (1 if i < a.cycles % a.parallel else 0)
           for i in range(a.parallel)]

    def worker(n):
        for _ in range(n):
            try:
                s = connect(a.host, a.port, a.timeout)
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    d = s.recv(len(msg) - len(got))
                    if not d:
                        break
                    got += d
                s.close()
                good = got == msg
                kind = None if good else "wrong or short echo"
            except OSError as e:
                good, kind = False, type(e).__name__
            with lock:
                if good:
                    done["ok"] += 1
                else:
                    done["fail"] += 1
                    done["kinds"].add(kind)

    t0 = time.monotonic()
    ths = [threading.Thread(target=worker, args=(n,)) for n in per]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    dt = time.monotonic() - t0
    res = {"mode": "cycles", "cycles": a.cycles, "parallel": a.parallel,
           "ok": done["ok"] == a.cycles, "succeeded": done["ok"],
           "failed": done["fail"], "failure_kinds": sorted(done["kinds"]),
           "seconds": round(dt, 3),
           "per_second": round(a.cycles / dt, 1) if dt > 0 else None}
    out(res)
    return 0 if res["ok"] else 1


def main():
    faulthandler.register(__import__("signal").SIGUSR1)
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("echo", "discard", "many", "cycles"))
    p.add_argument("--host", default=DAEMON_IP)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bytes", type=int, default=1 << 20)
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--inflight", type=int, default=256,
                   help="handshakes in flight at once (many)")
    p.add_argument("--hold", type=float, default=0.0)
    p.add_argument("--wait-stdin", action="store_true",
                   help="many: after ESTABLISHED wait for 'go' on stdin")
    p.add_argument("--msg", type=int, default=64)
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--rate", type=float, default=0.0,
                   help="echo: pace sending to this many MB/s (0 = no limit)")
    p.add_argument("--timeout", type=float, default=120.0)
    a = p.parse_args()
    return {"echo": mode_echo, "discard": mode_discard, "many": mode_many,
            "cycles": mode_cycles}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
