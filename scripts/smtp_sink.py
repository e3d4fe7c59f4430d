"""A small SMTP server that keeps what it accepts, for Panorama's mail tests.

Started by `scripts/smtp.sh run` (see there for the options). Each accepted
message becomes DIR/<n>.eml, n counting up from the highest number already in
DIR, so a server restarted on the same directory never overwrites a message.
A file is written under a dot-name and renamed, so a reader polling DIR never
sees half a message.

Before the message as received, the file carries trace headers the way an MTA
adds Received: lines, so a test can check the envelope and the session and
not only the headers the client chose to write:

    X-Sink-Mail-From: <envelope sender>
    X-Sink-Rcpt-To: <a>, <b>
    X-Sink-Tls: yes | no        (STARTTLS done, or implicit TLS)
    X-Sink-Auth: <login>        (only when the client authenticated)

Prints "ready <host>:<port>" on stdout once it accepts connections and runs
until SIGTERM or SIGINT.
"""

import argparse
import logging
import os
import re
import signal
import ssl
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Store:
    """Numbers and writes messages; safe across the server's connections."""

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        taken = [
            int(m.group(1))
            for m in (re.fullmatch(r"(\d+)\.eml", f) for f in os.listdir(directory))
            if m
        ]
        self.next = max(taken, default=0) + 1
        self.lock = threading.Lock()

    def put(self, data):
        with self.lock:
            n = self.next
            self.next += 1
        tmp = os.path.join(self.directory, f".{n}.eml.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.directory, f"{n}.eml"))
        return n


class Handler:
    def __init__(self, store, reject, defer, implicit_tls):
        self.store = store
        self.reject = {a.lower() for a in reject}
        self.defer = {a.lower() for a in defer}
        self.implicit_tls = implicit_tls

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 <%s>: recipient rejected" % address
        if address.lower() in self.defer:
            return "451 4.3.0 <%s>: try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        tls = self.implicit_tls or session.ssl is not None
        trace = [
            "X-Sink-Mail-From: <%s>" % envelope.mail_from,
            "X-Sink-Rcpt-To: %s" % ", ".join("<%s>" % r for r in envelope.rcpt_tos),
            "X-Sink-Tls: %s" % ("yes" if tls else "no"),
        ]
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode("utf-8", "replace")
            trace.append("X-Sink-Auth: %s" % login)
        head = ("\r\n".join(trace) + "\r\n").encode("utf-8")
        body = envelope.original_content or envelope.content
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogateescape")
        n = self.store.put(head + body)
        return "250 OK stored as %d.eml" % n


def authenticator_for(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        if not ok:
            # handled=False: aiosmtpd answers 535 itself; with the default
            # (handled=True) it would leave the client waiting for a reply.
            return AuthResult(success=False, handled=False)
        # auth_data comes back as session.auth_data, for the trace header.
        return AuthResult(success=True, auth_data=auth_data)

    return authenticate


def tls_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def main():
    p = argparse.ArgumentParser(prog="smtp.sh run")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    tls.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--auth", metavar="USER:PASS")
    p.add_argument("--reject", action="append", default=[], metavar="ADDR")
    p.add_argument("--defer", action="append", default=[], metavar="ADDR")
    args = p.parse_args()

    # AUTH without TLS is what the plain-text tests ask for; aiosmtpd's
    # warnings about it would only bury real errors in the test output.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    kwargs = {}
    if args.starttls:
        kwargs["tls_context"] = tls_context(*args.starttls)
        kwargs["require_starttls"] = True
    if args.tls:
        kwargs["ssl_context"] = tls_context(*args.tls)
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep:
            p.error("--auth wants USER:PASS")
        kwargs["authenticator"] = authenticator_for(user, password)
        kwargs["auth_required"] = True
        # aiosmtpd refuses AUTH until STARTTLS by default (auth_require_tls).
        # Keep that with --starttls, where it proves the client upgraded
        # first. With --tls aiosmtpd does not see the implicit TLS and would
        # refuse AUTH on an encrypted connection, and without TLS the tests
        # want AUTH over plain text on loopback.
        kwargs["auth_require_tls"] = bool(args.starttls)

    handler = Handler(Store(args.dir), args.reject, args.defer, bool(args.tls))
    controller = Controller(
        handler,
        hostname=args.host,
        port=args.port,
        server_hostname="panorama-test-smtp",
        **kwargs,
    )
    controller.start()
    print("ready %s:%d" % (args.host, args.port), flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(3600):
        pass
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
