"""Shared by bench/tls/run and `bench/accept/run --starttls`: a test
certificate (scripts/gen-test-cert), a private Postfix with TLS (STARTTLS
at smtpd_tls_security_level=may on its port, implicit TLS with
smtpd_tls_wrappermode on PORT+1, tlsmgr for session tickets), dpmail's
[tls] settings, and the load client bench/tls/tlsload.py run in a
namespace.

Owns: the certificate in the benchmark's temp dir; everything else is
owned by baselines.PostfixServer and benchlib as for bench/accept.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "accept"))
import benchlib as bl  # noqa: E402
import baselines  # noqa: E402

TLSLOAD = HERE / "tlsload.py"
PY = "/usr/bin/python3"


def make_cert(workdir):
    d = Path(workdir) / "tls"
    subprocess.run([str(bl.REPO / "scripts" / "gen-test-cert"), str(d)],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def dpmail_tls_conf(cert, key):
    return {"tls": {"cert_file": str(cert), "key_file": str(key)},
            "smtp": {"tls_implicit": "465"}}


POSTFIX_TLS_MAIN = """\
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 0
smtpd_tls_received_header = no
tls_random_source = dev:/dev/urandom
smtpd_tls_session_cache_timeout = 3600s
"""

POSTFIX_TLS_MASTER = """\
127.0.0.1:{wport} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
"""


class PostfixTLS(baselines.PostfixServer):
    """baselines.PostfixServer plus TLS: STARTTLS (may) on `port`,
    implicit TLS (wrappermode) on `port + 1`."""

    def __init__(self, workdir, cert, key, port=2526):
        self.cert, self.key = cert, key
        self.wport = port + 1
        super().__init__(workdir, port)
        self.wait_port(self.wport)

    def _postfix(self, verb):
        if verb == "start":
            with open(self.etc / "main.cf", "a") as f:
                f.write(POSTFIX_TLS_MAIN.format(cert=self.cert, key=self.key))
            with open(self.etc / "master.cf", "a") as f:
                f.write(POSTFIX_TLS_MASTER.format(wport=self.port + 1))
        super()._postfix(verb)


def tlsload(run, args, timeout):
    """tlsload.py ARGS through `run` (lab.run or LoopbackNS.run); its JSON."""
    res = run([PY, str(TLSLOAD)] + [str(x) for x in args], check=False,
              timeout=timeout)
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise bl.labmod.LabError(
            f"tlsload {args[:3]} gave no result (rc {res.returncode})\n"
            f"{res.stdout[-1500:]}\n{res.stderr[-1500:]}") from None


def loadavg():
    return [round(x, 2) for x in __import__("os").getloadavg()]


def wait(seconds):
    time.sleep(seconds)
