#!/usr/bin/python3
"""A kernel-side peer for dpmail's active opens ([diag] connect).

Listens on ADDR:PORT, accepts --conns connections, and on each one at the
same time reads everything dpmail sends (checking it is the diag pattern,
byte i = i mod 251) and sends --bytes of random data, then shuts down its
side. Prints one JSON line per connection: the peer port, bytes received,
whether the pattern held, bytes sent and their CRC-32 (zlib's, as dpmail
logs it). Bounded by --timeout.
"""
import argparse
import json
import os
import socket
import sys
import threading
import zlib

PATTERN = bytes(i % 251 for i in range(251)) * 1024


def serve(conn, addr, nbytes, out, lock):
    got, ok = 0, True
    state = {"got": 0, "ok": True}

    def reader():
        while True:
            b = conn.recv(1 << 20)
            if not b:
                break
            off = state["got"] % 251
            if len(b) <= len(PATTERN) - 251:
                if b != PATTERN[off:off + len(b)]:
                    state["ok"] = False
            else:
                exp = bytes((off + i) % 251 for i in range(len(b)))
                if b != exp:
                    state["ok"] = False
            state["got"] += len(b)

    t = threading.Thread(target=reader)
    t.start()
    crc, sent = 0, 0
    chunk = os.urandom(1 << 20)
    while sent < nbytes:
        n = min(len(chunk), nbytes - sent)
        conn.sendall(chunk[:n])
        crc = zlib.crc32(chunk[:n], crc)
        sent += n
    conn.shutdown(socket.SHUT_WR)
    t.join()
    conn.close()
    got, ok = state["got"], state["ok"]
    with lock:
        out.write(json.dumps({"port": addr[1], "received": got,
                              "pattern_ok": ok, "sent": sent,
                              "crc32": "%08x" % crc}) + "\n")
        out.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", default="198.18.0.1")
    ap.add_argument("--port", type=int, default=5001)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--bytes", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.addr, a.port))
    ls.listen(64)
    ls.settimeout(a.timeout)
    print("LISTENING", flush=True)
    lock = threading.Lock()
    threads = []
    for _ in range(a.conns):
        conn, addr = ls.accept()
        conn.settimeout(a.timeout)
        th = threading.Thread(target=serve,
                              args=(conn, addr, a.bytes, sys.stdout, lock))
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
