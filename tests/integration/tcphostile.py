#!/usr/bin/python3
"""Hostile TCP segments aimed at a live connection, run *inside* a lab
namespace:

    ip netns exec NS /usr/bin/python3 tcphostile.py --iface dpm0 \
        --kernel-mac M --daemon-mac D --port 7 --count 5 --rcvbuf 262144

It opens an ordinary kernel socket to the daemon's echo port (the victim),
echoes a little through it, reads the kernel's sequence numbers for it
with TCP_REPAIR (root only; nothing is sent while in repair mode, and it
leaves without a window probe), then injects hand-built segments on that
4-tuple over a raw AF_PACKET socket: bad checksums, data offsets below 5
and beyond the segment, malformed options, RSTs and SYNs outside the
window, an in-window but not exact RST and SYN (RFC 5961: must draw a
challenge ACK, not reset), data beyond the window, and an ACK for data
never sent. A second AF_PACKET socket with a classic BPF filter counts
what the daemon sends on the victim's 4-tuple after each kind. Finally
the victim echoes again: it must still work, byte-exact.

Prints one JSON object. Frames are built by hand (struct), so offsets,
option bytes and checksums are exactly what the kind says.

Must never: send from the root namespace or to addresses outside
198.18.0.0/15.
"""

import argparse
import json
import os
import select
import socket
import struct
import sys
import time

KERNEL_IP = "198.18.0.1"
DAEMON_IP = "198.18.0.2"

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26

TCP_REPAIR = 19
TCP_REPAIR_QUEUE = 20
TCP_QUEUE_SEQ = 21
TCP_RECV_QUEUE = 1
TCP_SEND_QUEUE = 2
TCP_REPAIR_OFF_NO_WP = -1

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# name -> (counter that must rise, daemon answer: "ack" = at least one
# segment back per frame sent, "none" = nothing back, "any" = not checked)
KINDS = {
    "bad_checksum":          ("tcp.bad_checksum", "none"),
    "offset_below_5":        ("tcp.bad_offset", "none"),
    "offset_beyond_segment": ("tcp.bad_offset", "none"),
    "option_len_0":          ("tcp.bad_options", "none"),
    "option_len_1":          ("tcp.bad_options", "none"),
    "option_past_header":    ("tcp.bad_options", "none"),
    "rst_beyond_window":     ("tcp.out_of_window", "none"),
    "rst_before_window":     ("tcp.out_of_window", "none"),
    "syn_beyond_window":     ("tcp.out_of_window", "any"),
    "rst_in_window":         ("tcp.challenge_acks", "ack"),
    "syn_in_window":         ("tcp.challenge_acks", "ack"),
    "data_beyond_window":    ("tcp.out_of_window", "any"),
    "ack_too_new":           ("tcp.ack_too_new", "any"),
}


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def frame(a, sport, seq, ack, flags, doff_words=None, options=b"",
          payload=b"", bad_csum=False, window=65535):
    """Ether/IPv4/TCP from the kernel's address to the daemon's."""
    hdr_len = 20 + len(options)
    assert hdr_len % 4 == 0
    doff = hdr_len // 4 if doff_words is None else doff_words
    tcp = struct.pack("!HHIIBBHHH", sport, a.port, seq & 0xffffffff,
                      ack & 0xffffffff, doff << 4, flags, window, 0, 0)
    tcp += options + payload
    src = socket.inet_aton(KERNEL_IP)
    dst = socket.inet_aton(DAEMON_IP)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    ck = csum(pseudo + tcp)
    if bad_csum:
        ck ^= 0x5a5a
    tcp = tcp[:16] + struct.pack("!H", ck) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0x4242, 0x4000,
                     64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = mac_bytes(a.daemon_mac) + mac_bytes(a.kernel_mac) + \
        struct.pack("!H", ETH_P_IP)
    return eth + ip + tcp


def bpf_from_daemon(dport_daemon, port_kernel):
    """cBPF: IPv4, TCP, sport == daemon port, dport == kernel port."""
    ins = [
        (0x28, 0, 0, 12),                   # ldh [12]
        (0x15, 0, 7, ETH_P_IP),             # jeq #0x800 else drop
        (0x30, 0, 0, 23),                   # ldb [23]
        (0x15, 0, 5, 6),                    # jeq #6 else drop
        (0xb1, 0, 0, 14),                   # ldxb 4*([14]&0xf)
        (0x48, 0, 0, 14),                   # ldh [x+14]
        (0x15, 0, 2, dport_daemon),         # jeq sport else drop
        (0x48, 0, 0, 16),                   # ldh [x+16]
        (0x15, 1, 0, port_kernel),          # jeq dport -> accept
        (0x06, 0, 0, 0),                    # drop: ret #0
        (0x06, 0, 0, 0x40000),              # accept: ret #262144
    ]
    # fix the jump targets: every "else drop" goes to index 9
    fixed = []
    for i, (code, jt, jf, k) in enumerate(ins):
        if code == 0x15 and i != 8:
            jf = 9 - i - 1
        fixed.append(struct.pack("HBBI", code, jt, jf, k))
    prog = b"".join(fixed)
    import ctypes
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HL", len(fixed), ctypes.addressof(buf))
    return fprog, buf


def repair_seqs(sock):
    """(kernel snd_nxt, kernel rcv_nxt) of an idle connected socket."""
    sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
        snd = sock.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ)
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
        rcv = sock.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ)
    finally:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP)
    return snd & 0xffffffff, rcv & 0xffffffff


def echo_check(sock, n, tag):
    msg = (tag.encode() + os.urandom(n))[:n]
    sock.sendall(msg)
    got = b""
    while len(got) < n:
        d = sock.recv(n - len(got))
        if not d:
            break
        got += d
    return got == msg


def drain(cap, wait):
    """Segments the daemon sent on the victim's 4-tuple within `wait` s."""
    segs = []
    end = time.monotonic() + wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([cap], [], [], left)
        if not r:
            break
        data, addr = cap.recvfrom(65535)
        if addr[2] == PACKET_OUTGOING:
            continue
        ihl = (data[14] & 0xf) * 4
        t = 14 + ihl
        seq, ack, off, flags = struct.unpack("!IIBB", data[t + 4:t + 14])
        dlen = len(data) - t - (off >> 4) * 4
        segs.append({"seq": seq, "ack": ack, "flags": flags, "len": dlen})
    return segs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iface", required=True)
    p.add_argument("--kernel-mac", required=True)
    p.add_argument("--daemon-mac", required=True)
    p.add_argument("--port", type=int, default=7)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--rcvbuf", type=int, default=262144)
    p.add_argument("--gap", type=float, default=0.005)
    a = p.parse_args()

    victim = socket.create_connection((DAEMON_IP, a.port), timeout=10)
    victim.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lport = victim.getsockname()[1]
    res = {"victim_port": lport, "sent": {}, "answers": {},
           "answer_flags": {}, "send_errors": []}
    res["victim_ok_before"] = echo_check(victim, 100, "before")
    time.sleep(0.3)              # let delayed ACKs go out: the socket idles
    snd_nxt, rcv_nxt = repair_seqs(victim)
    res["kernel_snd_nxt"], res["kernel_rcv_nxt"] = snd_nxt, rcv_nxt

    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                        socket.htons(ETH_P_ALL))
    fprog, _keep = bpf_from_daemon(a.port, lport)
    cap.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    cap.bind((a.iface, 0))
    drain(cap, 0.05)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                       socket.htons(ETH_P_ALL))
    tx.bind((a.iface, 0))

    far = a.rcvbuf + (1 << 20)          # past any window the daemon offers
    s, r = snd_nxt, rcv_nxt              # our seq, the daemon's next seq
    pay = b"X" * 100
    build = {
        "bad_checksum": lambda: frame(a, lport, s, r, ACK | PSH,
                                      payload=pay, bad_csum=True),
        "offset_below_5": lambda: frame(a, lport, s, r, ACK | PSH,
                                        doff_words=4, payload=pay),
        "offset_beyond_segment": lambda: frame(a, lport, s, r, ACK,
                                               doff_words=15),
        "option_len_0": lambda: frame(a, lport, s, r, ACK | PSH,
                                      options=b"\x08\x00\x00\x00", payload=pay),
        "option_len_1": lambda: frame(a, lport, s, r, ACK | PSH,
                                      options=b"\x02\x01\x01\x01", payload=pay),
        "option_past_header": lambda: frame(a, lport, s, r, ACK | PSH,
                                            options=b"\x01\x08\x0a\x00",
                                            payload=pay),
        "rst_beyond_window": lambda: frame(a, lport, s + far, 0, RST),
        "rst_before_window": lambda: frame(a, lport, s - far, 0, RST),
        "syn_beyond_window": lambda: frame(a, lport, s + far, 0, SYN),
        "rst_in_window": lambda: frame(a, lport, s + 1, 0, RST),
        "syn_in_window": lambda: frame(a, lport, s + 1, 0, SYN),
        "data_beyond_window": lambda: frame(a, lport, s + far, r, ACK | PSH,
                                            payload=pay),
        "ack_too_new": lambda: frame(a, lport, s, r + (1 << 20), ACK),
    }
    res["t_start"] = time.monotonic()
    for kind in KINDS:
        sent, segs = 0, []
        for _ in range(a.count):
            try:
                tx.send(build[kind]())
                sent += 1
            except OSError as e:
                res["send_errors"].append(f"{kind}: {e}")
            segs += drain(cap, a.gap)
        segs += drain(cap, 0.15)
        res["sent"][kind] = sent
        res["answers"][kind] = len(segs)
        res["answer_flags"][kind] = sorted({f"{x['flags']:#04x}" for x in segs})
        # a challenge ACK acknowledges exactly what the kernel has sent
        if kind in ("rst_in_window", "syn_in_window"):
            res.setdefault("challenge_ack_exact", {})[kind] = sum(
                1 for x in segs if x["flags"] & ACK and not x["flags"] & RST
                and x["ack"] == s and x["seq"] == r and x["len"] == 0)

    res["t_end"] = time.monotonic()
    try:
        res["victim_ok_after"] = echo_check(victim, 1000, "after")
    except OSError as e:
        res["victim_ok_after"] = False
        res["victim_error"] = repr(e)
    victim.close()
    print(json.dumps(res, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
