"""pytest wiring for the network lab (see lab.py).

Owns: the `lab` fixture (one namespace + one dpmaild per test, parametrised
over the PMDs), session-start removal of stale namespaces, and the atexit and
signal handlers that tear everything down when pytest is interrupted.

Must never skip silently: a missing dpmaild binary, missing tools or no root
is a failure, because CI must not go green without running the lab.
Set DPMAIL_LAB_ALLOW_SKIP=1 on a developer machine to turn those into skips.
"""

import atexit
import os
import shutil
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import lab as labmod  # noqa: E402

TOOLS = ("ip", "ping", "arping", "ethtool", "sysctl")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "smoke: quick start/ping/arping/stop check (sanitizer CI job)")
    config.addinivalue_line(
        "markers", "netns: needs root and network namespaces")
    config.addinivalue_line(
        "markers", "pmds(*names): run only on these PMDs (tap, af_packet)")
    config.addinivalue_line(
        "markers", "lab_config(**sections): extra daemon config for the lab "
        "fixture, e.g. lab_config(diag={'echo_port': 7}, tcp={'msl_ms': 1000})")
    config.addinivalue_line(
        "markers", "long: long-running (GiB transfers, 10k connections); "
        "release build only, deselect with -m 'not long'")
    atexit.register(labmod.cleanup_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _on_fatal_signal)
        except (ValueError, OSError):
            pass    # not the main thread (e.g. xdist worker set-up)


def _on_fatal_signal(signum, frame):
    labmod.cleanup_all()
    signal.signal(signum, signal.SIG_DFL)
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _problem(msg):
    if os.environ.get("DPMAIL_LAB_ALLOW_SKIP") == "1":
        pytest.skip(msg)
    pytest.fail(msg, pytrace=False)


def pytest_sessionstart(session):
    if os.geteuid() == 0 and shutil.which("ip"):
        removed = labmod.delete_stale_namespaces()
        if removed:
            print(f"lab: removed stale namespaces {removed}")


def pytest_collection_modifyitems(config, items):
    if not labmod.sanitizer_build():
        return
    skip = pytest.mark.skip(
        reason="long test: release build only (DPMAIL_SANITIZER=1 is set; "
               "ASan makes GiB transfers and 10k connections too slow)")
    for item in items:
        if item.get_closest_marker("long"):
            item.add_marker(skip)


def pytest_generate_tests(metafunc):
    if "pmd" in metafunc.fixturenames:
        pmds = labmod.selected_pmds()
        mark = metafunc.definition.get_closest_marker("pmds")
        if mark:
            pmds = [p for p in pmds if p in mark.args]
        metafunc.parametrize("pmd", pmds)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def lab_preflight():
    if os.geteuid() != 0:
        _problem("the network lab needs root (network namespaces, taps)")
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        _problem(f"the network lab needs these tools: {missing} "
                 f"(apt-get install iproute2 iputils-ping arping ethtool)")
    binary = labmod.daemon_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        _problem(f"dpmaild binary not found: {binary} "
                 f"(build with meson/ninja, or point DPMAILD at it)")
    if not labmod.DEFAULT_CONF.is_file():
        _problem(f"default config missing: {labmod.DEFAULT_CONF}")


@pytest.fixture
def lab(request, pmd, tmp_path, lab_preflight):
    """A started daemon in a fresh namespace; torn down pass or fail.
    Extra daemon config comes from the nearest `lab_config` marker(s)
    (closest wins per key)."""
    config = {}
    for mark in reversed(list(request.node.iter_markers("lab_config"))):
        for sec, kv in mark.kwargs.items():
            config.setdefault(sec, {}).update(kv)
    lb = labmod.Lab(pmd, tmp_path, name=request.node.name, config=config)
    try:
        lb.start()
    except labmod.LabError as e:
        problems = lb.close()
        labmod.save_log(lb, request.node.name)
        extra = ("\nteardown: " + "; ".join(problems)) if problems else ""
        pytest.fail(f"lab start ({pmd}): {e}{extra}", pytrace=False)
    except BaseException:
        lb.close()
        raise
    try:
        yield lb
    finally:
        labmod.close_labs(request, [lb], tail=60)


