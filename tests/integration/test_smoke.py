"""Smoke: start, 20 pings, one arping, stop with exit 0. The sanitizer CI
job runs only these (-m smoke)."""

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.smoke]


def test_smoke(lab, pmd):
    stats = lab.ping(20, interval=0.01, timeout=60)
    assert stats["received"] == 20, stats
    replies, out = lab.arping(1)
    assert replies == 1, out
    c = lab.counters()
    assert c["icmp.tx_echo_reply"] >= 20, c
    rc = lab.stop()
    assert not lab.stop_problems, lab.stop_problems
    assert rc == 0, f"exit code {rc}; log:\n{lab.log_tail()}"
    assert lab.final_counters, "no counter table printed at shutdown"
    print(f"\nsmoke [{pmd}]: rtt avg {stats.get('rtt_avg_ms')} ms, exit {rc}")
