#!/usr/bin/python3
"""Adds up every test result under a results folder.

Criterion TAP files (unit-*.tap, with unit-*.rc holding the exit status)
and pytest JUnit XML files (integration-*.xml). A unit binary that exited
non-zero without reporting a failure (a crash before or after its tests)
counts as one failure. A suite that produced no result at all counts as a
failure too, so nothing can pass by not running. Prints one line per
suite, then the total "N passed, N failed" as the last line; exits 1 if
anything failed.
"""
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET


def tap_counts(path):
    passed = failed = skipped = 0
    with open(path, errors="replace") as f:
        for line in f:
            if re.match(r"^ok\b", line):
                if "# SKIP" in line:
                    skipped += 1
                else:
                    passed += 1
            elif re.match(r"^not ok\b", line):
                failed += 1
    return passed, failed, skipped


def junit_counts(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = failed = skipped = 0
    for s in suites:
        total += int(s.get("tests", 0))
        failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
        skipped += int(s.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def main():
    out = sys.argv[1]
    rows = []
    for tap in sorted(glob.glob(os.path.join(out, "unit-*.tap"))):
        p, f, s = tap_counts(tap)
        rc_file = tap[:-4] + ".rc"
        rc = 0
        if os.path.exists(rc_file):
            rc = int(open(rc_file).read().split()[-1])
        if rc != 0 and f == 0:
            f = 1  # crashed outside any test
        rows.append((os.path.basename(tap)[:-4], p, f, s))
    for rc_file in sorted(glob.glob(os.path.join(out, "unit-*.rc"))):
        if not os.path.exists(rc_file[:-3] + ".tap"):
            rows.append((os.path.basename(rc_file)[:-3] + " (no TAP)", 0, 1, 0))
    for xml in ("integration-release.xml", "integration-san.xml"):
        path = os.path.join(out, xml)
        if os.path.exists(path):
            rows.append((xml[:-4],) + junit_counts(path))
        else:
            rows.append((xml[:-4] + " (did not run)", 0, 1, 0))
    if not any(r[0].startswith("unit-") for r in rows):
        rows.append(("unit (no test binaries found)", 0, 1, 0))
    tp = tf = ts = 0
    for name, p, f, s in rows:
        print(f"{name:40s} {p:5d} passed {f:5d} failed {s:5d} skipped")
        tp, tf, ts = tp + p, tf + f, ts + s
    tail = f", {ts} skipped" if ts else ""
    print(f"{tp} passed, {tf} failed{tail}")
    return 1 if tf else 0


if __name__ == "__main__":
    sys.exit(main())
