#!/usr/bin/python3
"""Hand-made frames, good and bad, for the malformed-input lab test.

Owns: the table of frame kinds (KINDS: what is sent, which daemon counter
must count it, whether an answer is expected) and a small sender/receiver
that runs *inside* a lab namespace:

    ip netns exec NS /usr/bin/python3 pktgen.py --iface dpm0 \
        --kernel-mac M --daemon-mac D --count 5

It sends every kind `count` times on the kernel-side interface over a raw
AF_PACKET socket, captures what comes back for a second, parses the answers
with scapy, and prints one JSON object.

Must never: send from the root namespace or to addresses outside
198.18.0.0/15. Importing this module (the test does, for KINDS) must stay
cheap: scapy is imported only when run as a program.
"""

import argparse
import json
import select
import socket
import struct
import sys
import time

KERNEL_IP = "198.18.0.1"
DAEMON_IP = "198.18.0.2"
OTHER_IP = "198.18.0.99"
BCAST_IP = "198.18.0.255"
OTHER_MAC = "02:00:5e:00:53:99"
BCAST_MAC = "ff:ff:ff:ff:ff:ff"

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

# name -> (counter that must rise, kind of answer expected)
# answer: "none" = must not be answered with an echo reply,
#         "echo" = must be answered, "unreach" = ICMP 3/2 expected,
#         "any"  = not checked.
KINDS = {
    # the drops the daemon contract lists explicitly
    "ip_bad_checksum":      ("ip.bad_checksum", "none"),
    "ip_truncated_header":  ("ip.truncated", "none"),
    "ip_len_beyond_frame":  ("ip.bad_length", "none"),
    "ip_len_below_header":  ("ip.bad_length", "none"),
    "ip_ihl_below_5":       ("ip.bad_ihl", "none"),
    "ip_version_6":         ("ip.bad_version", "none"),
    "ip_ttl_zero":          ("ip.ttl_zero", "none"),
    "ip_fragment_mf":       ("ip.fragment", "none"),
    "ip_fragment_offset":   ("ip.fragment", "none"),
    "ip_option_len_0":      ("ip.bad_options", "none"),
    "ip_option_len_1":      ("ip.bad_options", "none"),
    "ip_option_overrun":    ("ip.bad_options", "none"),
    "eth_unknown_type":     ("eth.unknown_type", "none"),
    "icmp_bad_checksum":    ("icmp.bad_checksum", "none"),
    "arp_bad_hlen":         ("arp.malformed", "none"),
    "arp_bad_plen":         ("arp.malformed", "none"),
    "arp_bad_htype":        ("arp.malformed", "none"),
    "arp_short":            ("arp.malformed", "none"),
    "ip_unknown_proto":     ("ip.unknown_proto", "unreach"),
    "echo_to_broadcast":    ("icmp.echo_broadcast_ignored", "none"),
    "ip_not_for_us":        ("ip.not_for_us", "none"),
    "eth_not_for_us":       ("eth.not_for_us", "none"),
    # further counters the daemon prints
    "icmp_truncated":       ("icmp.truncated", "none"),
    "icmp_other_type":      ("icmp.rx_other", "none"),
    "eth_vlan":             ("eth.vlan", "any"),
    "eth_ipv6":             ("eth.ipv6", "none"),
    # valid: echo request with IP options NOP + record route; must be
    # answered (without options) and counted in ip.options
    "echo_with_options":    ("ip.options", "echo"),
}

# Kinds that only the tap PMD can deliver: DPDK's af_packet PMD joins a
# PACKET_FANOUT group with PACKET_FANOUT_FLAG_DEFRAG, so the kernel holds or
# reassembles IPv4 fragments before the daemon could see them.
TAP_ONLY = {"ip_fragment_mf", "ip_fragment_offset"}


def kinds_for(pmd):
    return [k for k in KINDS if pmd == "tap" or k not in TAP_ONLY]


ECHO_ID_BASE = 0x4d00       # echo id = base + index of the kind in KINDS


def echo_id(kind):
    return ECHO_ID_BASE + list(KINDS).index(kind)


# ------------------------------------------------------------ frame building

def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def ip_bytes(ip):
    return socket.inet_aton(ip)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(dst, src, etype, payload):
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", etype) + payload


def ipv4(payload, proto=1, src=KERNEL_IP, dst=DAEMON_IP, ttl=64, version=4,
         ihl=None, tot_len=None, frag=0, ident=0x2a2a, options=b"",
         bad_checksum=False):
    assert len(options) % 4 == 0
    hlen = 20 + len(options)
    if ihl is None:
        ihl = hlen // 4
    if tot_len is None:
        tot_len = hlen + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, tot_len,
                      ident, frag, ttl, proto, 0, ip_bytes(src),
                      ip_bytes(dst)) + options
    ck = csum(hdr)
    if bad_checksum:
        ck ^= 0x5a5a
    hdr = hdr[:10] + struct.pack("!H", ck) + hdr[12:]
    return hdr + payload


def icmp(icmp_type, ident, seq, data=b"dpmail-lab-0123456789abcdef",
         code=0, bad_checksum=False):
    msg = struct.pack("!BBHHH", icmp_type, code, 0, ident, seq) + data
    ck = csum(msg)
    if bad_checksum:
        ck ^= 0x5a5a
    return msg[:2] + struct.pack("!H", ck) + msg[4:]


def arp(sha, spa, tpa, htype=1, ptype=0x0800, hlen=6, plen=4, op=1,
        tha="00:00:00:00:00:00"):
    sha_b = mac_bytes(sha)
    tha_b = mac_bytes(tha)
    if hlen != 6:       # keep the body self-consistent with its hlen
        sha_b = (sha_b + b"\0" * hlen)[:hlen]
        tha_b = (tha_b + b"\0" * hlen)[:hlen]
    spa_b, tpa_b = ip_bytes(spa), ip_bytes(tpa)
    if plen != 4:
        spa_b = (spa_b + b"\0" * plen)[:plen]
        tpa_b = (tpa_b + b"\0" * plen)[:plen]
    return struct.pack("!HHBBH", htype, ptype, hlen, plen, op) + \
        sha_b + spa_b + tha_b + tpa_b


def build(kind, kmac, dmac, seq):
    """The frame for one kind (seq varies the echo sequence number)."""
    eid = echo_id(kind)
    echo = icmp(8, eid, seq)
    ip_echo = ipv4(echo, ident=seq + 1)

    def to_us(payload, etype=0x0800):
        return eth(dmac, kmac, etype, payload)

    if kind == "ip_bad_checksum":
        return to_us(ipv4(echo, bad_checksum=True))
    if kind == "ip_truncated_header":
        return to_us(ip_echo[:12])
    if kind == "ip_len_beyond_frame":
        return to_us(ipv4(echo, tot_len=20 + len(echo) + 200))
    if kind == "ip_len_below_header":
        return to_us(ipv4(echo, tot_len=16))
    if kind == "ip_ihl_below_5":
        return to_us(ipv4(echo, ihl=4))
    if kind == "ip_version_6":
        return to_us(ipv4(echo, version=6))
    if kind == "ip_ttl_zero":
        return to_us(ipv4(echo, ttl=0))
    if kind == "ip_fragment_mf":
        return to_us(ipv4(echo, frag=0x2000))
    if kind == "ip_fragment_offset":
        return to_us(ipv4(echo, frag=0x0010))
    if kind == "ip_option_len_0":
        return to_us(ipv4(echo, options=b"\x07\x00\x04\x00"))
    if kind == "ip_option_len_1":
        return to_us(ipv4(echo, options=b"\x07\x01\x04\x00"))
    if kind == "ip_option_overrun":
        # NOP, then record route claiming 11 bytes where 3 remain
        return to_us(ipv4(echo, options=b"\x01\x07\x0b\x04"))
    if kind == "eth_unknown_type":
        return to_us(b"dpmail-lab-unknown-ethertype".ljust(46, b"\0"), 0x88B5)
    if kind == "icmp_bad_checksum":
        return to_us(ipv4(icmp(8, eid, seq, bad_checksum=True)))
    if kind == "arp_bad_hlen":
        return to_us(arp(kmac, KERNEL_IP, DAEMON_IP, hlen=8), 0x0806)
    if kind == "arp_bad_plen":
        return to_us(arp(kmac, KERNEL_IP, DAEMON_IP, plen=6), 0x0806)
    if kind == "arp_bad_htype":
        return to_us(arp(kmac, KERNEL_IP, DAEMON_IP, htype=0x1234), 0x0806)
    if kind == "arp_short":
        return to_us(arp(kmac, KERNEL_IP, DAEMON_IP)[:20], 0x0806)
    if kind == "ip_unknown_proto":
        return to_us(ipv4(b"dpmail-lab-proto-253-payload", proto=253,
                          ident=0x5300 + seq))
    if kind == "echo_to_broadcast":
        return eth(BCAST_MAC, kmac, 0x0800, ipv4(echo, dst=BCAST_IP))
    if kind == "ip_not_for_us":
        return to_us(ipv4(echo, dst=OTHER_IP))
    if kind == "eth_not_for_us":
        return eth(OTHER_MAC, kmac, 0x0800, ip_echo)
    if kind == "icmp_truncated":
        return to_us(ipv4(struct.pack("!BBH", 8, 0, csum(b"\x08\x00"))))
    if kind == "icmp_other_type":
        return to_us(ipv4(icmp(0, eid, seq)))     # unsolicited echo reply
    if kind == "eth_vlan":
        return to_us(struct.pack("!HH", 5, 0x0800) + ip_echo, 0x8100)
    if kind == "eth_ipv6":
        ip6 = struct.pack("!IHBB", 6 << 28, 0, 59, 64) + \
            bytes(15) + b"\x01" + bytes(15) + b"\x02"
        return to_us(ip6, 0x86DD)
    if kind == "echo_with_options":
        # NOP, record route (len 7, ptr 4, one empty slot) = 8 bytes
        return to_us(ipv4(echo, options=b"\x01\x07\x07\x04" + bytes(4)))
    raise ValueError(kind)


# ------------------------------------------------------------ run it

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", required=True)
    ap.add_argument("--kernel-mac", required=True)
    ap.add_argument("--daemon-mac", required=True)
    ap.add_argument("--count", type=int, default=5)
    ap.add_argument("--gap", type=float, default=0.002)
    ap.add_argument("--listen", type=float, default=1.0)
    ap.add_argument("--kinds", default="", help="comma list; default all")
    args = ap.parse_args()

    from scapy.layers.inet import ICMP, IP, IPerror  # noqa: F401
    from scapy.layers.l2 import Ether

    kinds = [k for k in args.kinds.split(",") if k] or list(KINDS)
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    rx.bind((args.iface, 0))
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((args.iface, 0))

    id_to_kind = {echo_id(k): k for k in KINDS}
    result = {
        "sent": {k: 0 for k in kinds},
        "echo_replies": {k: 0 for k in kinds},
        "echo_replies_with_options": 0,
        "unreach_replies": 0,           # ICMP 3/2 quoting our proto 253
        "other_icmp_from_daemon": [],
        "send_errors": [],
    }

    def drain(until):
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            r, _, _ = select.select([rx], [], [], left)
            if not r:
                return
            data, addr = rx.recvfrom(65535)
            if addr[2] == PACKET_OUTGOING:
                continue
            pkt = Ether(data)
            if IP not in pkt or pkt[IP].src != DAEMON_IP or ICMP not in pkt:
                continue
            ic = pkt[ICMP]
            if ic.type == 0:
                kind = id_to_kind.get(ic.id)
                if kind in result["echo_replies"]:
                    result["echo_replies"][kind] += 1
                    if kind == "echo_with_options" and pkt[IP].ihl != 5:
                        result["echo_replies_with_options"] += 1
                continue
            if ic.type == 3 and ic.code == 2 and IPerror in pkt \
                    and pkt[IPerror].proto == 253 \
                    and pkt[IPerror].src == KERNEL_IP \
                    and pkt[IPerror].dst == DAEMON_IP:
                result["unreach_replies"] += 1
                continue
            if len(result["other_icmp_from_daemon"]) < 20:
                result["other_icmp_from_daemon"].append(
                    f"type={ic.type} code={ic.code} {pkt.summary()}")

    for seq in range(args.count):
        for kind in kinds:
            frame = build(kind, args.kernel_mac, args.daemon_mac, seq)
            try:
                tx.send(frame)
                result["sent"][kind] += 1
            except OSError as e:
                result["send_errors"].append(f"{kind}: {e}")
            drain(time.monotonic() + args.gap)
    drain(time.monotonic() + args.listen)
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
