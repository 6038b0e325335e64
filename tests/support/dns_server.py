"""A real DNS server on loopback, UDP and TCP on one port, answering from a dict the test controls.

Built on dnspython's message API (``dns.message.from_wire``, ``make_response``): what Mailhub's
checks send and parse is the real wire format, nothing of dnspython is replaced. A name the dict
knows answers its records (a CNAME is followed within the dict); a name it knows with other types
answers NOERROR with no records; any other name is NXDOMAIN. An answer too large for the asker's
UDP size is sent truncated, and the asker retries over TCP, as with a real server.

    dns = DnsServer().start()
    dns.txt("mh202612._domainkey.shop.test", "v=DKIM1; k=rsa; p=...")
    settings.MAILHUB_DNS_RESOLVERS = [dns.address]
"""

from __future__ import annotations

import socketserver
import struct
import threading
from collections.abc import Iterable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 60


def txt_rdata(text: str) -> str:
    """``text`` as a TXT record's presentation form: strings of at most 255 characters, quoted
    (a 2048-bit DKIM key does not fit in one)."""
    escaped = [
        text[i : i + 255].replace("\\", "\\\\").replace('"', '\\"')
        for i in range(0, len(text), 255)
    ]
    return " ".join(f'"{part}"' for part in escaped or [""])


class DnsServer:
    def __init__(self) -> None:
        # (name without the trailing dot, lower-case; type) -> presentation-form rdata
        self.records: dict[tuple[str, str], list[str]] = {}
        self.queries: list[tuple[str, str]] = []  # what was asked, in order
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []

    # -- what it serves ----------------------------------------------------------------------------

    def set(self, name: str, rdtype: str, values: Iterable[str]) -> None:
        with self._lock:
            self.records[(name.lower().rstrip("."), rdtype.upper())] = list(values)

    def txt(self, name: str, *texts: str) -> None:
        self.set(name, "TXT", [txt_rdata(text) for text in texts])

    def remove(self, name: str, rdtype: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self.records if k[0] == name.lower() and rdtype in (None, k[1])]:
                del self.records[key]

    def clear(self) -> None:
        with self._lock:
            self.records.clear()
            self.queries.clear()

    # -- the server --------------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> DnsServer:
        server = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                wire = server.answer(data, udp=True)
                if wire:
                    sock.sendto(wire, self.client_address)

        class Tcp(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while header := self.rfile.read(2):
                    if len(header) < 2:
                        return
                    (length,) = struct.unpack("!H", header)
                    wire = server.answer(self.rfile.read(length), udp=False)
                    if not wire:
                        return
                    self.wfile.write(struct.pack("!H", len(wire)) + wire)

        for _ in range(20):  # the UDP port may be taken for TCP by someone else: try another
            udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
            self.port = udp.server_address[1]
            try:
                socketserver.ThreadingTCPServer.allow_reuse_address = True
                tcp = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Tcp)
            except OSError:
                udp.server_close()
                continue
            break
        else:
            raise RuntimeError("no port free for UDP and TCP at once")
        for item in (udp, tcp):
            item.daemon_threads = True
            threading.Thread(target=item.serve_forever, daemon=True).start()
            self._servers.append(item)
        return self

    def stop(self) -> None:
        for item in self._servers:
            item.shutdown()
            item.server_close()
        self._servers.clear()

    def answer(self, data: bytes, *, udp: bool) -> bytes:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return b""  # not DNS: a real server drops it too
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self.queries.append((name, rdtype))
            try:
                response.set_rcode(self._resolve(response, question.name, name, rdtype))
            except dns.exception.DNSException:  # a record the test wrote wrong: say so
                response.answer.clear()
                response.set_rcode(dns.rcode.SERVFAIL)
        if not udp:
            return response.to_wire()
        limit = query.payload if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()

    def _resolve(
        self, response: dns.message.Message, owner: dns.name.Name, name: str, rdtype: str
    ) -> dns.rcode.Rcode:
        for _ in range(8):  # a CNAME chain within the dict
            values = self.records.get((name, rdtype))
            if values:
                response.answer.append(_rrset(owner, rdtype, values))
                return dns.rcode.NOERROR
            target = self.records.get((name, "CNAME"))
            if not target:
                break
            response.answer.append(_rrset(owner, "CNAME", target[:1]))
            owner = dns.name.from_text(target[0])
            name = owner.to_text(omit_final_dot=True).lower()
        known = any(key[0] == name for key in self.records)
        return dns.rcode.NOERROR if known or response.answer else dns.rcode.NXDOMAIN


def _rrset(owner: dns.name.Name, rdtype: str, values: list[str]) -> dns.rrset.RRset:
    # Names in the values (a CNAME's target, an MX's host) are absolute, dot or not.
    return dns.rrset.from_text_list(
        owner, TTL, dns.rdataclass.IN, rdtype, values, origin=dns.name.root, relativize=False
    )
