"""`bench/accept/run --starttls`: the accept benchmark with STARTTLS on
both sides. smtp-source cannot do TLS, so the load is
bench/tls/tlsload.py (smtplib + starttls, processes x threads) and
smtp-sink (no TLS) is left out.

  postfix  bench/accept/baselines.py's private Postfix plus
           smtpd_tls_security_level = may and the test certificate
           (smtpd_tls_cert_file/key_file), 127.0.0.1:2526
  dpmail   dpmaild on net_tap, [tls] cert_file/key_file, 198.18.0.2:25

Tests: --messages 2 KB messages one per connection (a STARTTLS handshake
per message) and --sessions x --per-conn per connection; interleaved,
medians of --runs. Writes bench/results/accept_starttls-<ts>.json.
"""

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import tlsbench as tb  # noqa: E402

bl = tb.bl


def run(a):
    bl.install_cleanup()
    wd = bl.workdir()
    os.chmod(wd, 0o755)
    lab, servers, rc = None, [], 1
    names = ["postfix", "dpmail"]
    if a.only:
        names = [n for n in names if n in a.only.split(",")]
    try:
        cert, key = tb.make_cert(wd)
        targets = {}
        if "postfix" in names:
            p = tb.PostfixTLS(wd, cert, key)
            servers.append(p)
            targets["postfix"] = (p.run, tb.baselines.LOOPBACK, p.port, p)
        if "dpmail" in names:
            (Path(wd) / "dpmail").mkdir()
            conf = tb.dpmail_tls_conf(cert, key)
            conf.update({"tcp": {"msl_ms": 1000},
                         "smtp": dict(conf["smtp"],
                                      max_conns_per_client=100000)})
            for sec, kv in bl.parse_sets(a.set).items():
                conf.setdefault(sec, {}).update(kv)
            lab = bl.start_dpmail(conf, Path(wd) / "dpmail")
            targets["dpmail"] = (lambda cmd, **kw: lab.run(cmd, **kw),
                                 bl.DPMAIL_IP, 25, None)
        size = 2048
        for name, (runf, host, port, srv) in targets.items():
            w = tb.tlsload(runf, ["smtp", host, port, "--messages", 16,
                                  "--sessions", 4, "--size", size], 120)
            if not w["ok"]:
                raise bl.labmod.LabError(f"warm-up on {name}: {w}")
            if srv:
                srv.drain()
        tests = [{"name": "2 KB, 1/conn", "messages": a.messages,
                  "per_conn": 1},
                 {"name": f"2 KB, {a.per_conn}/conn",
                  "messages": a.sessions * a.per_conn,
                  "per_conn": a.per_conn}]
        runs = {t["name"]: {n: [] for n in targets} for t in tests}
        loads = []
        for t in tests:
            for i in range(a.runs):
                for name, (runf, host, port, srv) in targets.items():
                    c0 = lab.counters() if name == "dpmail" else None
                    cpu0 = lab.cpu_seconds() if c0 is not None else None
                    r = tb.tlsload(runf, [
                        "smtp", host, port, "--messages", t["messages"],
                        "--sessions", a.sessions, "--per-conn",
                        t["per_conn"], "--size", size],
                        120 + t["messages"] / 5)
                    r["loadavg"] = tb.loadavg()
                    loads.append(r["loadavg"][0])
                    if c0 is not None:
                        r["daemon_cpu_s"] = round(lab.cpu_seconds() - cpu0,
                                                  2)
                        d = bl.labmod.counter_delta(c0, lab.counters())
                        q = d.get("smtp.messages_queued")
                        r["smtp.messages_queued"] = q
                        if r["ok"] and q is not None and q != t["messages"]:
                            r["ok"] = False
                    runs[t["name"]][name].append(r)
                    print(f"  {t['name']:14s} run {i + 1}/{a.runs} "
                          f"{name:8s} {r['msgs_per_s']:>8} msg/s "
                          f"{r['seconds']:7.2f} s  ok {r['ok']}  load "
                          f"{r['loadavg']}"
                          + (f"  daemon cpu {r['daemon_cpu_s']} s"
                             if "daemon_cpu_s" in r else "")
                          + ("" if r["ok"] else f"  {r['last_error']}"),
                          flush=True)
                    if srv:
                        srv.drain()
        summary, rows = {}, []
        for t in tests:
            med = {n: bl.median([r["msgs_per_s"] for r in rs if r["ok"]])
                   for n, rs in runs[t["name"]].items()}
            s = {"messages": t["messages"], "per_conn": t["per_conn"],
                 "sessions": a.sessions, "size": size,
                 "median_msgs_per_s": med,
                 "ratio_dpmail_over_postfix": bl.ratio(med.get("dpmail"),
                                                       med.get("postfix"))}
            summary[t["name"]] = s
            rows.append([t["name"], med.get("postfix"), med.get("dpmail"),
                         s["ratio_dpmail_over_postfix"]])
        print()
        print(bl.table([f"STARTTLS ({a.sessions} sessions)",
                        "postfix msg/s", "dpmail msg/s", "dpmail/postfix"],
                       rows))
        print(f"load average during runs: {loads}")
        all_ok = all(r["ok"] for m in runs.values() for rs in m.values()
                     for r in rs)
        path = bl.write_result("accept_starttls", {
            "params": vars(a), "tests": tests, "runs": runs,
            "summary": summary, "loadavg_1min_after_each_run": loads,
            "method": "bench/tls/tlsload.py smtp: smtplib, EHLO, STARTTLS "
                      "(no cert verification), EHLO, MAIL/RCPT/DATA per "
                      "message, QUIT; processes x threads"})
        print(f"\nresult: {path}")
        rc = 0 if all_ok else 1
        return rc
    except KeyboardInterrupt:
        rc = 130
        return rc
    except bl.labmod.LabError as e:
        print(f"error: {e}", file=sys.stderr)
        if lab is not None:
            print(f"daemon log tail:\n{lab.log_tail()}", file=sys.stderr)
        for s in servers:
            print(f"postfix log tail:\n{s.log_tail()}", file=sys.stderr)
        return 1
    finally:
        for s in servers:
            s.close()
        if lab is not None:
            problems = lab.close()
            if problems:
                print(f"dpmaild at shutdown: {problems}", file=sys.stderr)
        shutil.rmtree(Path(wd) / "dpmail" / "spool", ignore_errors=True)
        shutil.rmtree(Path(wd) / "postfix" / "queue", ignore_errors=True)
        if rc in (0, 130):
            shutil.rmtree(wd, ignore_errors=True)
        else:
            print(f"kept {wd}", file=sys.stderr)
