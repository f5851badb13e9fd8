#!/usr/bin/python3
"""tlsload: the TLS load client of bench/tls/run and `bench/accept/run
--starttls`, run inside the client's network namespace (`ip netns exec`).
Debian's /usr/bin/python3 and its ssl module (OpenSSL 3), several
processes (one Python process tops out at one core).

  tlsload.py handshake HOST PORT --seconds S --procs P [--resume]
      implicit TLS (465): connect, TLS 1.3 handshake, read the 220 (which
      also takes in the server's session tickets), close; as many as it
      can for S seconds. --resume offers the last ticket each time (one
      full handshake per process first) and counts the ones resumed.
  tlsload.py smtp HOST PORT --messages N --sessions S --per-conn K --size B
      STARTTLS mail: connect, EHLO, STARTTLS, EHLO, then K x (MAIL, RCPT,
      DATA, B bytes, .), QUIT; N messages over S concurrent sessions
      (processes x threads), one new TLS session per connection.

Certificates are not verified (self-signed test certs; same cost on
every target). Prints one JSON object on its last line.
"""

import argparse
import json
import multiprocessing as mp
import smtplib
import socket
import ssl
import sys
import threading
import time


def ctx13():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.minimum_version = ssl.TLSVersion.TLSv1_3
    return c


def one_handshake(ctx, host, port, session):
    raw = socket.create_connection((host, port), timeout=15)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        s = ctx.wrap_socket(raw, server_hostname="mx.dpmail.test",
                            session=session)
        try:
            banner = s.recv(512)
            if not banner.startswith(b"220"):
                raise OSError(f"banner {banner[:40]!r}")
            return s.session, s.session_reused, s.version()
        finally:
            s.close()
    finally:
        raw.close()


def hs_worker(host, port, seconds, resume, start, q):
    ctx = ctx13()
    n = reused = errors = 0
    versions = set()
    session = None
    if resume:
        session, _, _ = one_handshake(ctx, host, port, None)
    while time.time() < start:
        time.sleep(0.001)
    end = start + seconds
    while time.time() < end:
        try:
            sess, r, v = one_handshake(ctx, host, port,
                                       session if resume else None)
            n += 1
            reused += bool(r)
            versions.add(v)
            if resume and sess is not None:
                session = sess
        except (OSError, ssl.SSLError):
            errors += 1
    q.put((n, reused, errors, sorted(versions)))


def handshake(a):
    q = mp.Queue()
    start = time.time() + 0.5 + 0.1 * a.procs
    ps = [mp.Process(target=hs_worker, args=(a.host, a.port, a.seconds,
                                             a.resume, start, q))
          for _ in range(a.procs)]
    for p in ps:
        p.start()
    res = [q.get() for _ in ps]
    for p in ps:
        p.join()
    n = sum(r[0] for r in res)
    reused = sum(r[1] for r in res)
    out = {"handshakes": n, "resumed": reused,
           "errors": sum(r[2] for r in res), "seconds": a.seconds,
           "procs": a.procs,
           "versions": sorted({v for r in res for v in r[3]}),
           "handshakes_per_s": round(n / a.seconds, 1)}
    print(json.dumps(out))


def smtp_session(a, k, body):
    s = smtplib.SMTP(a.host, a.port, local_hostname="client.example",
                     timeout=60)
    try:
        s.ehlo()
        s.starttls(context=ctx13() if a.tls13 else _ctx_any())
        s.ehlo()
        for _ in range(k):
            s.sendmail(a.sender, [a.rcpt], body)
        s.quit()
    finally:
        s.close()


def _ctx_any():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def smtp_worker(a, jobs, start, q):
    """jobs: list of per-connection message counts for this process;
    starts at wall-clock `start` (all processes spawned and imported)."""
    body = (f"From: {a.sender}\r\nTo: {a.rcpt}\r\nSubject: bench\r\n\r\n"
            .encode())
    line = b"x" * 76 + b"\r\n"
    body += line * max(1, (a.size - len(body)) // len(line))
    lock = threading.Lock()
    state = {"ok": 0, "err": 0, "last": None}
    it = iter(jobs)

    def th():
        while True:
            with lock:
                k = next(it, None)
            if k is None:
                return
            try:
                smtp_session(a, k, body)
                with lock:
                    state["ok"] += k
            except (OSError, smtplib.SMTPException, ssl.SSLError) as e:
                with lock:
                    state["err"] += k
                    state["last"] = repr(e)[:200]

    ts = [threading.Thread(target=th) for _ in range(a.threads)]
    while time.time() < start:
        time.sleep(0.001)
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put((state["ok"], state["err"], state["last"], time.time()))


def smtp(a):
    conns = [a.per_conn] * (a.messages // a.per_conn)
    if a.messages % a.per_conn:
        conns.append(a.messages % a.per_conn)
    procs = max(1, min(a.procs, a.sessions))
    a.threads = max(1, a.sessions // procs)
    shares = [conns[i::procs] for i in range(procs)]
    q = mp.Queue()
    start = time.time() + 0.5 + 0.1 * procs
    ps = [mp.Process(target=smtp_worker, args=(a, sh, start, q))
          for sh in shares]
    for p in ps:
        p.start()
    res = [q.get() for _ in ps]
    dt = max(r[3] for r in res) - start
    for p in ps:
        p.join()
    ok = sum(r[0] for r in res)
    err = sum(r[1] for r in res)
    print(json.dumps({"ok": err == 0 and ok == a.messages, "accepted": ok,
                      "failed": err,
                      "last_error": next((r[2] for r in res if r[2]), None),
                      "seconds": round(dt, 3),
                      "msgs_per_s": round(ok / dt, 1),
                      "connections": len(conns),
                      "sessions": procs * a.threads}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    h = sub.add_parser("handshake")
    h.add_argument("host")
    h.add_argument("port", type=int)
    h.add_argument("--seconds", type=float, default=5)
    h.add_argument("--procs", type=int, default=4)
    h.add_argument("--resume", action="store_true")
    m = sub.add_parser("smtp")
    m.add_argument("host")
    m.add_argument("port", type=int)
    m.add_argument("--messages", type=int, default=800)
    m.add_argument("--sessions", type=int, default=16)
    m.add_argument("--procs", type=int, default=4)
    m.add_argument("--per-conn", type=int, default=1)
    m.add_argument("--size", type=int, default=2048)
    m.add_argument("--sender", default="bench@client.example")
    m.add_argument("--rcpt", default="alice@dpmail.test")
    m.add_argument("--tls13", action="store_true")
    a = ap.parse_args()
    (handshake if a.mode == "handshake" else smtp)(a)


if __name__ == "__main__":
    sys.exit(main())
