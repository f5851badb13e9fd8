"""Idle daemon: poll loops must back off (two-core CI machines)."""

import time

import pytest

from lab import record_result

pytestmark = pytest.mark.netns

IDLE_S = 10.0
LIMIT_PCT = 5.0


def test_idle_cpu(lab, pmd):
    lab.ping(3, interval=0.2)     # link and ARP settled, then silence
    time.sleep(1.0)
    t0, c0 = time.monotonic(), lab.cpu_seconds()
    time.sleep(IDLE_S)
    t1, c1 = time.monotonic(), lab.cpu_seconds()
    assert lab.alive()
    pct = 100.0 * (c1 - c0) / (t1 - t0)
    print(f"\nidle_cpu [{pmd}]: {c1 - c0:.2f} s CPU in {t1 - t0:.1f} s "
          f"= {pct:.2f}% of one core (limit {LIMIT_PCT}%)")
    record_result(f"idle_cpu-{pmd}", {"pmd": pmd, "cpu_s": c1 - c0,
                                       "wall_s": t1 - t0, "pct_one_core": pct})
    assert pct < LIMIT_PCT, f"idle daemon used {pct:.2f}% of a core"
