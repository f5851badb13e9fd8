"""Active opens, two workers, and a SYN flood (issue: userspace TCP).

- dpmail connects out ([diag] connect) to a kernel listener and moves
  100 MiB each way, byte-exact (pattern checked by the peer, CRC-32 of
  what the peer sent checked against dpmail's log).
- Two workers on a two-core machine (lcores 0,1@0,2@1): each worker's
  active opens complete (a reply landing on the wrong worker would meet no
  connection there and a RST), and passive connections land on both.
- 20,000 spoofed SYNs while a client keeps connecting: every client
  connection succeeds (SYN cookies once the SYN queue is full), and the
  half-open connections drain afterwards.
"""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from lab import counter_delta, record_result

HERE = Path(__file__).resolve().parent
PY = "/usr/bin/python3"
PEER = str(HERE / "activepeer.py")
FLOOD = str(HERE / "synflood.py")
ECHO = 7
PEER_PORT = 5001
DONE_RE = re.compile(r"diag: client worker=(\d+) lport=(\d+) to \S+ done: "
                     r"sent=(\d+) received=(\d+) crc32=([0-9a-f]{8})")

pytestmark = [pytest.mark.netns, pytest.mark.pmds("tap")]


def run_peer(lab, conns, nbytes):
    p = lab.popen([PY, PEER, "--port", str(PEER_PORT), "--conns", str(conns),
                   "--bytes", str(nbytes), "--timeout", "150"],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "LISTENING", p.stderr.read()
    return p


def finish_peer(lab, p, conns, want_bytes):
    out, err = p.communicate(timeout=180)
    peers = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    assert len(peers) == conns, f"peer saw {len(peers)} of {conns}: {err}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = DONE_RE.findall(lab.log_text())
        if len(done) >= conns:
            break
        time.sleep(0.2)
    by_port = {p["port"]: p for p in peers}
    rows = []
    for w, lport, sent, rcvd, crc in done:
        peer = by_port.get(int(lport))
        assert peer is not None, f"no peer record for lport {lport}"
        assert peer["pattern_ok"], peer
        assert peer["received"] == int(sent) == want_bytes, (peer, sent)
        assert int(rcvd) == peer["sent"] == want_bytes, (peer, rcvd)
        assert crc == peer["crc32"], (crc, peer)
        rows.append((int(w), int(lport)))
    assert len(rows) == conns, (rows, lab.log_tail())
    return rows


@pytest.mark.lab_config(diag={"connect": f"198.18.0.1:{PEER_PORT}",
                              "connect_bytes": 100 << 20,
                              "connect_delay_ms": 3000})
def test_active_open_100m(lab, pmd):
    t0 = time.monotonic()
    p = run_peer(lab, 1, 100 << 20)
    rows = finish_peer(lab, p, 1, 100 << 20)
    dt = time.monotonic() - t0
    print(f"\nactive_open_100m [{pmd}]: 100 MiB each way byte-exact on "
          f"lport {rows[0][1]} in {dt:.1f} s (incl. 3 s connect delay)")
    record_result(f"active_open_100m-{pmd}", {"seconds": dt})


@pytest.mark.lab_config(eal={"lcores": "0,1@0,2@1"},
                        dataplane={"workers": 2},
                        diag={"echo_port": ECHO,
                              "connect": f"198.18.0.1:{PEER_PORT}",
                              "connect_per_worker": 2,
                              "connect_bytes": 8 << 20,
                              "connect_delay_ms": 3000},
                        tcp={"msl_ms": 1000})
def test_two_workers(lab, pmd):
    p = run_peer(lab, 4, 8 << 20)
    rows = finish_peer(lab, p, 4, 8 << 20)
    workers = sorted(w for w, _ in rows)
    assert workers == [0, 0, 1, 1], rows
    # passive connections: 200 short echoes spread over both workers
    script = ("import socket\n"
              "ok = 0\n"
              "for i in range(200):\n"
              "    s = socket.create_connection(('198.18.0.2', %d), timeout=5)\n"
              "    s.sendall(b'x%%d' %% i); ok += s.recv(64) == b'x%%d' %% i\n"
              "    s.close()\n"
              "print(ok)\n" % ECHO)
    r = lab.run([PY, "-c", script], timeout=120)
    assert r.stdout.strip() == "200", r.stdout + r.stderr
    c = lab.counters()
    per = {w: c[f"w{w}.tcp_accepted"] for w in (0, 1)}
    conn = {w: c[f"w{w}.tcp_connects"] for w in (0, 1)}
    print(f"\ntwo_workers [{pmd}]: active opens per worker {conn}, "
          f"passive accepted per worker {per}, frames steered "
          f"{c['worker.steered_out']}, rst sent {c['tcp.rst_tx']}")
    record_result(f"two_workers-{pmd}", {"accepted": per, "connects": conn,
                                         "steered": c["worker.steered_out"]})
    assert conn == {0: 2, 1: 2}, conn
    assert per[0] > 0 and per[1] > 0, per
    assert per[0] + per[1] == 200, per


@pytest.mark.lab_config(diag={"echo_port": ECHO},
                        tcp={"syn_backlog": 64, "syn_retries": 2,
                             "msl_ms": 1000})
def test_syn_flood(lab, pmd):
    lab.ping(3, interval=0.05)
    before = lab.counters()
    flood = lab.popen([PY, FLOOD, "--iface", lab.kernel_if,
                       "--src-mac", lab.kernel_mac, "--dst-mac",
                       lab.daemon_mac, "--port", str(ECHO), "--count",
                       "20000"], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    script = ("import socket, sys, time\n"
              "ok = n = 0\n"
              "t = time.monotonic()\n"
              "while n < 100 or time.monotonic() - t < 1:\n"
              "    n += 1\n"
              "    try:\n"
              "        s = socket.create_connection(('198.18.0.2', %d), timeout=5)\n"
              "        s.sendall(b'hello'); ok += s.recv(16) == b'hello'\n"
              "        s.close()\n"
              "    except OSError as e:\n"
              "        print('fail', e, file=sys.stderr)\n"
              "print(ok, n)\n" % ECHO)
    r = lab.run([PY, "-c", script], timeout=120)
    out, err = flood.communicate(timeout=120)
    ok, n = map(int, r.stdout.split())
    during = lab.counters()
    d = counter_delta(before, during)
    print(f"\nsyn_flood [{pmd}]: {out.strip()} spoofed SYNs sent; client "
          f"{ok}/{n} connections ok; syn_rx +{d.get('tcp.syn_rx', 0)}, "
          f"backlog full +{d.get('tcp.syn_backlog_full', 0)}, cookies "
          f"sent +{d.get('tcp.syncookies_sent', 0)} ok "
          f"+{d.get('tcp.syncookies_ok', 0)}, live_conns "
          f"{during['tcp.live_conns']}")
    assert ok == n, r.stderr[-2000:]
    assert int(out.strip()) == 20000
    assert d.get("tcp.syncookies_sent", 0) > 0, d
    # recovery: half-open connections give up (syn_retries 2: 1+2+4 s)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        live = lab.counters()["tcp.live_conns"]
        if live == 0:
            break
        time.sleep(0.5)
    assert live == 0, live
    r = lab.run([PY, "-c", "import socket; s = socket.create_connection("
                 "('198.18.0.2', %d), timeout=5); s.sendall(b'again'); "
                 "print(s.recv(16).decode())" % ECHO], timeout=30)
    assert r.stdout.strip() == "again"
    record_result(f"syn_flood-{pmd}", {"client_ok": ok, "client_n": n,
                                       "delta": d})
