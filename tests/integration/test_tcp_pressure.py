"""Send buffers must not starve the receive path of mbufs.

100 chargen connections whose clients never read would queue far more
than the worker's mbuf pool (256 KiB each); the send budget
([tcp] sndbuf_pool_pct) stops them short, so the daemon keeps answering
ping and new connections, and everything drains when the clients go.
"""

import time

import pytest

from lab import counter_delta

PY = "/usr/bin/python3"
CHARGEN, ECHO = 19, 7

pytestmark = [pytest.mark.netns, pytest.mark.pmds("tap"),
              pytest.mark.lab_config(diag={"chargen_port": CHARGEN,
                                           "echo_port": ECHO},
                                     tcp={"msl_ms": 1000})]

HOLDERS = """
import socket, sys, time
socks = []
for i in range(100):
    s = socket.create_connection(("198.18.0.2", %d), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    socks.append(s)
print("OPEN", flush=True)
sys.stdin.readline()
for s in socks:
    s.close()
""" % CHARGEN


def test_send_buffers_cannot_starve_rx(lab, pmd):
    import subprocess
    before = lab.counters()
    p = lab.popen([PY, "-c", HOLDERS], stdin=subprocess.PIPE,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "OPEN", p.stderr.read()
        time.sleep(3)  # chargen fills every send buffer it may
        mid = lab.counters()
        stats = lab.ping(20, interval=0.05, timeout=30)
        r = lab.run([PY, "-c", "import socket; s = socket.create_connection("
                     "('198.18.0.2', %d), timeout=5); s.sendall(b'still');"
                     " print(s.recv(16).decode())" % ECHO], timeout=30)
        p.stdin.write("\n")
        p.stdin.flush()
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = lab.counters()
        if after["tcp.live_conns"] == 0:
            break
        time.sleep(0.5)
    d = counter_delta(before, mid)
    print(f"\nsend buffer pressure [{pmd}]: sndbuf_pool_full "
          f"+{d.get('tcp.sndbuf_pool_full', 0)}, port.alloc_failed "
          f"+{d.get('port.alloc_failed', 0)}, ping {stats['received']}/20, "
          f"new echo {r.stdout.strip()!r}, live_conns after "
          f"{after['tcp.live_conns']}")
    assert d.get("tcp.sndbuf_pool_full", 0) > 0, d
    assert stats["received"] == 20, stats
    assert r.stdout.strip() == "still", r.stdout + r.stderr
    assert after["tcp.live_conns"] == 0, after["tcp.live_conns"]
