"""ARP: the kernel side arpings dpmail's address and gets every reply."""

import pytest

from lab import counter_delta

pytestmark = pytest.mark.netns


def test_arping(lab, pmd):
    before = lab.counters()
    replies, out = lab.arping(3)
    after = lab.counters()
    d = counter_delta(before, after)
    print(f"\narping [{pmd}]: {replies} replies; arp.rx_request "
          f"+{d.get('arp.rx_request')}, arp.tx_reply +{d.get('arp.tx_reply')}")
    assert replies == 3, out
    assert after["arp.rx_request"] >= 3, after
    assert after["arp.tx_reply"] >= 3, after
    assert d["arp.rx_request"] >= 3 and d["arp.tx_reply"] >= 3, d
