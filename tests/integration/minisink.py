#!/usr/bin/python3
"""minisink: a small asyncio SMTP server for the MTA tests, the downstream
that dpmaild relays to. It keeps every message's exact bytes (after
dot-unstuffing, or the BDAT chunks as sent) with its envelope, and answers
what the test tells it to: per-recipient replies (550 for one address, 250
for another), a reply for MAIL or for the end of data, a 421 greeting, or
nothing at all (down: the listening socket is closed, so a connect gets a
RST; up again on the same address).

In the test process (`MiniSink(ns, "198.18.0.10")`): the listening socket
is made inside the lab namespace (smtpclient.ns_socket) and served by one
event loop thread shared by every sink of the process; the test changes
`rcpt_replies` and friends at any time, reads `messages`, waits with
`wait_count`.

As a command, inside a namespace (`ip netns exec NS minisink.py --listen
198.18.0.10:25 --dir D`): one file per message, D/<n>.eml (the data) and
D/<n>.json (the envelope), and a line per message on stdout.

Owns: its listening and accepted sockets, its loop thread (shared).
Must never: connect anywhere (it only listens), listen outside the address
it is given (198.18.0.0/15 in the lab).
"""

import argparse
import asyncio
import json
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

EXTENSIONS = ("PIPELINING", "SIZE 104857600", "8BITMIME", "ENHANCEDSTATUSCODES",
              "SMTPUTF8", "DSN", "CHUNKING")
MAX_LINE = 65536

_LOOP = None
_LOOP_LOCK = threading.Lock()


def _loop():
    """The process's sink event loop, run by a daemon thread."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            t = threading.Thread(target=loop.run_forever, daemon=True,
                                 name="minisink-loop")
            t.start()
            _LOOP = loop
        return _LOOP


def _call(coro, timeout=10):
    return asyncio.run_coroutine_threadsafe(coro, _loop()).result(timeout)


def _addr(arg):
    """'<a@b> SIZE=1' -> 'a@b' (the path, without its parameters)."""
    arg = arg.strip()
    if arg.startswith("<"):
        end = arg.find(">")
        return arg[1:end] if end > 0 else arg[1:]
    return arg.split()[0] if arg else ""


class MiniSink:
    """One listening address. Settings (read per command, change at will):

    greeting        "220 ..." or e.g. "421 4.3.2 busy" (then closes)
    ehlo_ext        EHLO keywords offered
    mail_reply      None (250) or a reply line for MAIL FROM
    rcpt_replies    {address (lower case): reply line}; others get
                    `rcpt_default`
    data_reply      None (250), a reply line, or callable(msg) -> line,
                    for the end of data / BDAT LAST
    drop_after_data True: close without replying after the data (the
                    sender cannot know whether it was taken)
    """

    def __init__(self, ns, host, port=25, name=None, start=True,
                 hostname=None):
        self.ns, self.host, self.port = ns, host, port
        self.name = name or f"{host}:{port}"
        self.hostname = hostname or f"sink-{host.replace('.', '-')}.test"
        self.greeting = f"220 {self.hostname} ESMTP minisink"
        self.ehlo_ext = list(EXTENSIONS)
        self.mail_reply = None
        self.rcpt_replies = {}
        self.rcpt_default = "250 2.1.5 Ok"
        self.data_reply = None
        self.drop_after_data = False
        self.messages = []          # dicts, see _deliver
        self.sessions = 0           # connections accepted
        self.commands = []          # (time, peer, line) of every command
        self.log_commands = True
        self._server = None
        self._writers = set()
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        if start:
            self.up()

    # -- control (any thread) -------------------------------------------

    def up(self):
        """Listen (again). Returns self."""
        if self._server is not None:
            return self
        sock = self._listen_socket()
        self._server = _call(self._start(sock))
        return self

    def _listen_socket(self):
        if self.ns:
            import smtpclient as sc
            sock = sc.ns_socket(self.ns)
        else:
            sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        return sock

    async def _start(self, sock):
        return await asyncio.start_server(self._session, sock=sock,
                                          limit=MAX_LINE)

    def down(self):
        """Stop listening and drop every open session (connects now get a
        RST from the kernel)."""
        srv, self._server = self._server, None
        if srv is None:
            return

        async def stop():
            srv.close()
            for w in list(self._writers):
                w.transport.abort()
            await srv.wait_closed()
        _call(stop())

    close = down

    @property
    def listening(self):
        return self._server is not None

    def count(self):
        with self._lock:
            return len(self.messages)

    def wait_count(self, n, timeout=60):
        """Until at least `n` messages are stored; returns them (copy)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"sink {self.name}: {len(self.messages)} messages "
                        f"after {timeout}s, expected {n}; last commands: "
                        f"{self.commands[-8:]}")
                self._cv.wait(min(left, 0.2))
            return list(self.messages)

    def by_rcpt(self):
        """{recipient: [message...]} of the messages stored so far."""
        out = {}
        with self._lock:
            for m in self.messages:
                for r in m["rcpts"]:
                    out.setdefault(r.lower(), []).append(m)
        return out

    # -- the session (loop thread) ----------------------------------------

    def _deliver(self, env, data, peer):
        msg = {"mail_from": env["mail_from"], "mail_params": env["params"],
               "rcpts": list(env["rcpts"]), "helo": env["helo"],
               "peer": peer, "data": data, "time": time.time(),
               "sink": self.name, "bdat": env.get("bdat", False)}
        r = self.data_reply
        if callable(r):
            r = r(msg)
        r = r or "250 2.0.0 Ok: stored"
        if r.startswith("2"):
            with self._cv:
                self.messages.append(msg)
                self._cv.notify_all()
        return r

    async def _session(self, reader, writer):
        self._writers.add(writer)
        self.sessions += 1
        peer = writer.get_extra_info("peername")
        peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        try:
            await self._dialogue(reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _dialogue(self, reader, writer, peer):
        def say(line):
            writer.write(line.encode() + b"\r\n")

        say(self.greeting)
        if not self.greeting.startswith("220"):
            await writer.drain()
            return
        env = None
        helo = None
        while True:
            line = await asyncio.wait_for(reader.readline(), 300)
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
            if self.log_commands and len(self.commands) < 100000:
                self.commands.append((time.time(), peer, cmd))
            verb = cmd[:4].upper()
            if verb == "EHLO":
                helo = cmd[5:].strip()
                lines = [self.hostname] + self.ehlo_ext
                for i, l in enumerate(lines):
                    writer.write(f"250{'-' if i < len(lines) - 1 else ' '}"
                                 f"{l}\r\n".encode())
            elif verb == "HELO":
                helo = cmd[5:].strip()
                say(f"250 {self.hostname}")
            elif cmd.upper().startswith("MAIL FROM:"):
                rest = cmd[10:]
                r = self.mail_reply or "250 2.1.0 Ok"
                if r.startswith("2"):
                    params = rest[rest.find(">") + 1:].strip() \
                        if ">" in rest else ""
                    env = {"mail_from": _addr(rest), "params": params,
                           "rcpts": [], "helo": helo, "chunks": []}
                say(r)
            elif cmd.upper().startswith("RCPT TO:"):
                if env is None:
                    say("503 5.5.1 Error: need MAIL command")
                    continue
                a = _addr(cmd[8:])
                r = self.rcpt_replies.get(a.lower(), self.rcpt_default)
                if r.startswith("2"):
                    env["rcpts"].append(a)
                say(r)
            elif verb == "DATA":
                if env is None or not env["rcpts"]:
                    say("503 5.5.1 Error: need RCPT command")
                    continue
                say("354 End data with <CR><LF>.<CR><LF>")
                await writer.drain()
                parts = []
                while True:
                    l = await asyncio.wait_for(reader.readline(), 300)
                    if not l:
                        return
                    if l == b".\r\n":
                        break
                    parts.append(l[1:] if l.startswith(b".") else l)
                if self.drop_after_data:
                    writer.transport.abort()
                    return
                say(self._deliver(env, b"".join(parts), peer))
                env = None
            elif verb == "BDAT":
                f = cmd.split()
                n = int(f[1])
                last = len(f) > 2 and f[2].upper() == "LAST"
                chunk = await asyncio.wait_for(reader.readexactly(n), 300)
                if env is None or not env["rcpts"]:
                    say("503 5.5.1 Error: need RCPT command")
                    continue
                env["chunks"].append(chunk)
                if last:
                    if self.drop_after_data:
                        writer.transport.abort()
                        return
                    env["bdat"] = True
                    say(self._deliver(env, b"".join(env["chunks"]), peer))
                    env = None
                else:
                    say(f"250 2.0.0 {n} octets")
            elif verb == "RSET":
                env = None
                say("250 2.0.0 Ok")
            elif verb == "NOOP":
                say("250 2.0.0 Ok")
            elif verb == "QUIT":
                say("221 2.0.0 Bye")
                await writer.drain()
                return
            else:
                say("502 5.5.2 Error: command not recognized")
            await writer.drain()


def main():
    ap = argparse.ArgumentParser(description="minisink: store SMTP mail")
    ap.add_argument("--listen", required=True, help="ip:port")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--rcpt-reply", action="append", default=[],
                    metavar="ADDR=REPLY")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    out = Path(a.dir)
    out.mkdir(parents=True, exist_ok=True)
    s = MiniSink(None, host, int(port))
    for it in a.rcpt_reply:
        k, _, v = it.partition("=")
        s.rcpt_replies[k.lower()] = v
    print(f"minisink: listening on {a.listen}", flush=True)
    n = 0
    try:
        while True:
            msgs = s.wait_count(n + 1, timeout=10 ** 9)
            for m in msgs[n:]:
                n += 1
                (out / f"{n}.eml").write_bytes(m["data"])
                env = {k: v for k, v in m.items() if k != "data"}
                (out / f"{n}.json").write_text(json.dumps(env) + "\n")
                print(f"{n} from=<{m['mail_from']}> rcpts={m['rcpts']} "
                      f"size={len(m['data'])}", flush=True)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
