"""Malformed and unusual frames: each is dropped and counted, the daemon
lives on, a valid echo with IP options is answered without options, and an
unknown IP protocol draws ICMP protocol unreachable (3/2).

The frames come from pktgen.py, run inside the namespace on the kernel-side
interface, addressed to the daemon's MAC from 198.18.0.1.
"""

import json
import time
from collections import defaultdict
from pathlib import Path

import pytest

import pktgen
from lab import counter_delta, record_result

pytestmark = pytest.mark.netns

PER_KIND = 5
PKTGEN = Path(__file__).with_name("pktgen.py")


def test_malformed_burst(lab, pmd):
    kinds = pktgen.kinds_for(pmd)
    lab.ping(3, interval=0.05)        # both sides know each other's MAC
    before = lab.counters()
    res = lab.run(["/usr/bin/python3", str(PKTGEN),
                   "--iface", lab.kernel_if, "--kernel-mac", lab.kernel_mac,
                   "--daemon-mac", lab.daemon_mac, "--count", str(PER_KIND),
                   "--kinds", ",".join(kinds)],
                  timeout=60)
    out = json.loads(res.stdout)
    time.sleep(0.2)
    assert lab.alive(), f"dpmaild died during the burst:\n{lab.log_tail()}"
    after = lab.counters()
    delta = counter_delta(before, after)

    assert not out["send_errors"], out["send_errors"]
    # frames sent per counter (several kinds may feed one counter)
    want = defaultdict(int)
    for kind in kinds:
        want[pktgen.KINDS[kind][0]] += out["sent"][kind]

    print(f"\nmalformed_burst [{pmd}]: {PER_KIND} of each of {len(kinds)} "
          f"kinds, daemon mac {lab.daemon_mac}"
          + ("" if pmd == "tap" else
             f" (not sent over af_packet: {sorted(pktgen.TAP_ONLY)})"))
    print(f"  {'counter':32} {'sent':>6} {'delta':>6}")
    for counter in sorted(set(want) | {k for k, v in delta.items() if v}):
        print(f"  {counter:32} {want.get(counter, ''):>6} {delta.get(counter, 0):>6}")
    print(f"  echo replies: {out['echo_replies']}")
    print(f"  ICMP 3/2 replies to proto 253: {out['unreach_replies']}; "
          f"other ICMP from daemon: {out['other_icmp_from_daemon']}")
    record_result(f"malformed_burst-{pmd}", {
        "pmd": pmd, "per_kind": PER_KIND, "sent_per_counter": dict(want),
        "delta": {k: v for k, v in delta.items() if v}, "pktgen": out})

    problems = []
    for counter, n in sorted(want.items()):
        if counter not in after:
            problems.append(f"{counter}: not printed by the daemon")
        elif delta[counter] < n:
            problems.append(f"{counter}: rose by {delta[counter]}, sent {n}")
    for kind in kinds:
        answer = pktgen.KINDS[kind][1]
        got = out["echo_replies"][kind]
        if answer == "none" and got:
            problems.append(f"{kind}: answered {got} times, must be dropped")
    n_opt = out["sent"]["echo_with_options"]
    if out["echo_replies"]["echo_with_options"] != n_opt:
        problems.append(f"echo_with_options: {out['echo_replies']['echo_with_options']}"
                        f" replies to {n_opt} requests")
    if out["echo_replies_with_options"]:
        problems.append(f"{out['echo_replies_with_options']} echo replies "
                        f"carried IP options (must be sent without)")
    if out["unreach_replies"] < 1:
        problems.append("no ICMP 3/2 (protocol unreachable) for protocol 253")
    if delta.get("icmp.tx_unreach", 0) < out["unreach_replies"]:
        problems.append(f"icmp.tx_unreach rose by {delta.get('icmp.tx_unreach')}"
                        f" but {out['unreach_replies']} were seen")
    assert not problems, "\n".join(problems)

    assert lab.alive()
    stats = lab.ping(100, interval=0.005)
    assert stats["received"] == 100, f"after the burst: {stats}"
