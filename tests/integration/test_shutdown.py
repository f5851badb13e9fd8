"""Clean shutdown on SIGINT (SIGTERM is exercised by every teardown)."""

import signal

import pytest

pytestmark = pytest.mark.netns


def test_clean_shutdown(lab, pmd):
    stats = lab.ping(10, interval=0.01)
    assert stats["received"] == 10, stats
    rc = lab.stop(signal.SIGINT)
    assert not lab.stop_problems, lab.stop_problems
    assert rc == 0, f"exit code {rc} after SIGINT; log:\n{lab.log_tail()}"
    fc = lab.final_counters
    assert fc, f"no counter table at shutdown; log:\n{lab.log_tail()}"
    print(f"\nclean_shutdown [{pmd}]: exit {rc}, {len(fc)} counters, "
          f"icmp.tx_echo_reply={fc.get('icmp.tx_echo_reply')}")
    assert fc.get("icmp.rx_echo_request", 0) >= 10, fc
    assert fc.get("icmp.tx_echo_reply", 0) >= 10, fc
