#!/usr/bin/python3
"""Link impairment for the TCP lab: loss, delay with jitter, reordering,
duplication and corruption between the kernel and the daemon.

Two ways, chosen by `Impairment(lab, ...)`:

* `tc`: `tc qdisc add dev <kernel_if> root netem loss ... corrupt ...` on
  the kernel side. Impairs only what the kernel sends (kernel -> daemon).
  Needs sch_netem in the kernel.
* `relay` (userspace, this file run as a program): for kernels without
  sch_netem (e.g. the Firecracker VMs CI runs on). The kernel's address
  moves from the tap to a veth pair `vk`/`vb` (offloads off, so frames stay
  <= MTU and checksums are complete); the tap `dpm0` keeps no address and
  no ARP, and this relay copies frames between `vb` and `dpm0` over
  AF_PACKET sockets, applying netem's model per frame: drop with `loss`%,
  flip one random bit past the Ethernet header with `corrupt`%, send twice
  with `duplicate`%, send at once with `reorder`% (the rest wait `delay`
  +- `jitter` ms, so jitter reorders too). By default only kernel -> daemon
  is impaired, like netem on the kernel side; `both=True` impairs the
  daemon -> kernel direction the same way.

`DPMAIL_IMPAIR=tc|relay` forces one; the default is `tc` when the kernel
has netem, else `relay`. The relay works for the tap PMD only.

Must never: bridge anything but the lab namespace's own interfaces.
"""

import argparse
import heapq
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32


class Impairment:
    def __init__(self, lab, loss=0.0, delay_ms=0, jitter_ms=0, reorder=0.0,
                 duplicate=0.0, corrupt=0.0, both=False, method=None):
        self.lab = lab
        self.p = dict(loss=loss, delay_ms=delay_ms, jitter_ms=jitter_ms,
                      reorder=reorder, duplicate=duplicate, corrupt=corrupt)
        self.both = both
        self.method = method or os.environ.get("DPMAIL_IMPAIR") or None
        self.proc = None
        self._stats = None

    def netem_args(self):
        p = self.p
        return ["netem", "loss", f"{p['loss']}%",
                "delay", f"{p['delay_ms']}ms", f"{p['jitter_ms']}ms",
                "reorder", f"{p['reorder']}%",
                "duplicate", f"{p['duplicate']}%",
                "corrupt", f"{p['corrupt']}%"]

    def describe(self):
        p = self.p
        dirs = "both directions" if (self.both and self.method == "relay") \
            else "kernel -> daemon"
        return (f"impairment via {self.method} ({dirs}): loss {p['loss']}% "
                f"delay {p['delay_ms']}ms +-{p['jitter_ms']}ms reorder "
                f"{p['reorder']}% duplicate {p['duplicate']}% corrupt "
                f"{p['corrupt']}%")

    def __enter__(self):
        lab = self.lab
        if self.method in (None, "tc"):
            res = lab.run(["tc", "qdisc", "add", "dev", lab.kernel_if, "root"]
                          + self.netem_args(), check=False)
            if res.returncode == 0:
                self.method = "tc"
                return self
            if self.method == "tc":
                raise RuntimeError(f"tc netem failed: {res.stderr.strip()}")
            self.method = "relay"
        if self.method != "relay":
            raise RuntimeError(f"unknown impairment method {self.method!r}")
        if lab.pmd != "tap":
            raise RuntimeError("the userspace relay needs the tap PMD")
        self._relay_up()
        return self

    def _relay_up(self):
        lab = self.lab
        cidr = f"{lab_ip(lab)}"
        tap = lab.kernel_if
        run = lab.run
        run(["ip", "addr", "del", cidr, "dev", tap])
        run(["ip", "link", "set", tap, "arp", "off"])
        run(["ip", "link", "add", "vk", "type", "veth", "peer", "name", "vb"])
        for ifc in ("vk", "vb"):
            run(["sysctl", "-qw", f"net.ipv6.conf.{ifc}.disable_ipv6=1"],
                check=False)
            run(["ethtool", "-K", ifc, "tx", "off", "tso", "off", "gso", "off",
                 "gro", "off"], check=False)
        run(["ethtool", "-K", tap, "gro", "off"], check=False)
        run(["ip", "link", "set", "vb", "up"])
        run(["ip", "addr", "add", cidr, "dev", "vk"])
        run(["ip", "link", "set", "vk", "up"])
        p = self.p
        args = ["--to-daemon", tap, "--to-kernel", "vb"]
        for k, v in p.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        if self.both:
            args.append("--both")
        self.proc = lab.popen(["/usr/bin/python3", str(Path(__file__))] + args,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("RELAY READY"):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            raise RuntimeError(f"impairment relay did not start: {line} {err}")
        # the kernel must learn the daemon's MAC again, through the relay
        run(["ip", "neigh", "flush", "all"], check=False)

    def stats(self):
        if self.method != "relay" or self.proc is None:
            return self._stats
        if self._stats is None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                out, _ = self.proc.communicate(timeout=10)
                self._stats = json.loads(out.strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                self.proc.kill()
                self.proc.wait()
        return self._stats

    def __exit__(self, *exc):
        lab = self.lab
        if self.method == "tc":
            lab.run(["tc", "qdisc", "del", "dev", lab.kernel_if, "root"],
                    check=False)
        elif self.method == "relay":
            self.stats()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            lab.run(["ip", "link", "del", "vk"], check=False)
            lab.run(["ip", "link", "set", lab.kernel_if, "arp", "on"],
                    check=False)
            lab.run(["ip", "addr", "add", lab_ip(lab), "dev", lab.kernel_if],
                    check=False)
        return False


def lab_ip(lab):
    import lab as labmod
    return f"{labmod.KERNEL_IP}/{labmod.PREFIX_LEN}"


# ---------------------------------------------------------------- the relay

def open_sock(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    for opt in (SO_RCVBUFFORCE, SO_SNDBUFFORCE):
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
        except OSError:
            pass
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


def relay(a):
    rng = random.Random(a.seed)
    to_daemon, to_kernel = open_sock(a.to_daemon), open_sock(a.to_kernel)
    # frames read on the kernel's veth go to the daemon, and back
    peer = {to_kernel: (to_daemon, "to_daemon", True),
            to_daemon: (to_kernel, "to_kernel", a.both)}
    st = {d: dict(frames=0, dropped=0, corrupted=0, duplicated=0,
                  reordered=0, send_errors=0)
          for d in ("to_daemon", "to_kernel")}
    heap, seq = [], 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    sys.stdout.write("RELAY READY\n")
    sys.stdout.flush()

    def send(out, frame, d):
        try:
            out.send(frame)
        except OSError:
            st[d]["send_errors"] += 1

    while not stop:
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, _, out, frame, d = heapq.heappop(heap)
            send(out, frame, d)
        timeout = 0.2 if not heap else max(0.0, heap[0][0] - now)
        try:
            r, _, _ = select.select([to_daemon, to_kernel], [], [], timeout)
        except InterruptedError:
            continue
        for s in r:
            out, d, impaired = peer[s]
            for _ in range(256):
                try:
                    frame, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                st[d]["frames"] += 1
                if not impaired:
                    send(out, frame, d)
                    continue
                if rng.random() * 100 < a.loss:
                    st[d]["dropped"] += 1
                    continue
                if rng.random() * 100 < a.corrupt and len(frame) > 14:
                    b = bytearray(frame)
                    i = rng.randrange(14, len(b))
                    b[i] ^= 1 << rng.randrange(8)
                    frame = bytes(b)
                    st[d]["corrupted"] += 1
                copies = 1
                if rng.random() * 100 < a.duplicate:
                    copies = 2
                    st[d]["duplicated"] += 1
                t = time.monotonic()
                for _ in range(copies):
                    if a.delay_ms <= 0 or rng.random() * 100 < a.reorder:
                        if a.delay_ms > 0:
                            st[d]["reordered"] += 1
                        send(out, frame, d)
                        continue
                    delay = a.delay_ms + rng.uniform(-a.jitter_ms, a.jitter_ms)
                    seq += 1
                    heapq.heappush(heap, (t + max(0.0, delay) / 1000.0, seq,
                                          out, frame, d))
    for _, _, out, frame, d in sorted(heap):
        send(out, frame, d)
    print(json.dumps(st, sort_keys=True))
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--to-daemon", required=True, help="tap (daemon side)")
    p.add_argument("--to-kernel", required=True, help="veth peer of vk")
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--reorder", type=float, default=0.0)
    p.add_argument("--duplicate", type=float, default=0.0)
    p.add_argument("--corrupt", type=float, default=0.0)
    p.add_argument("--both", action="store_true")
    p.add_argument("--seed", type=int, default=None)
    return relay(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
