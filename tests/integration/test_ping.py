"""ICMP echo through the lab: steady and flood ping, both PMDs.

Figures (rtt min/avg/max) are printed (pytest -s) and written to
$DPMAIL_RESULTS/<test>-<pmd>.json when that is set. No timing assertions:
only loss is asserted.
"""

import pytest

from lab import DAEMON_IP, record_result

pytestmark = pytest.mark.netns


def _report(name, pmd, stats):
    print(f"\n{name} [{pmd}]: {stats['transmitted']} sent, "
          f"{stats['received']} received, {stats['loss_pct']}% loss, "
          f"rtt min/avg/max/mdev = {stats.get('rtt_min_ms')}/"
          f"{stats.get('rtt_avg_ms')}/{stats.get('rtt_max_ms')}/"
          f"{stats.get('rtt_mdev_ms')} ms")
    record_result(f"{name}-{pmd}", dict(stats, pmd=pmd, test=name))


def test_ping_1000(lab, pmd):
    stats = lab.ping(1000, interval=0.002, timeout=90)
    _report("ping_1000", pmd, stats)
    assert stats["transmitted"] == 1000, stats
    assert stats["received"] == 1000, f"loss pinging {DAEMON_IP}: {stats}"
    assert stats["errors"] == 0 and stats["duplicates"] == 0, stats
    c = lab.counters()
    assert c["icmp.rx_echo_request"] >= 1000, c
    assert c["icmp.tx_echo_reply"] >= 1000, c


def test_flood_ping(lab, pmd):
    stats = lab.ping(20000, flood=True, timeout=120)
    _report("flood_ping", pmd, stats)
    assert stats["transmitted"] == 20000, stats
    lost = stats["transmitted"] - stats["received"]
    assert lost < 20, f"flood ping lost {lost} of 20000 (>= 0.1%): {stats}"
    assert lab.alive()
