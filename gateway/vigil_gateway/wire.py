"""One HTTP/1.1 exchange on a kept-alive socket to a service: the request written in one piece, the answer
read whole (``Content-Length``, chunked, or until the service closes).

The gateway's forwarding hop (:class:`vigil_gateway.proxy.Origin`) used ``http.client``, whose per-call
work (a regex check and an encode per header, the ``email`` package parsing the answer's headers, its
state machine) was about a fifth of the gateway's CPU per forwarded read, more than the floor hop's whole
Flask dispatch. This module does the same exchange with what a call between two Vigil processes needs,
and keeps ``http.client``'s rules: header names and values that could split the request are refused
(``ValueError``, before anything is sent); a body is sent with its ``Content-Length`` (and ``0`` for a
bodiless POST, PUT or PATCH); ``Accept-Encoding: identity`` and ``Host`` are sent; 1xx interim answers are
skipped; an answer without a body (HEAD, 1xx, 204, 304) is not read further; an answer cut short, or that
is not HTTP at all, is an ``http.client.HTTPException`` (the caller's retry rules are unchanged); header
values are read as ``http.client`` read them (ISO-8859-1, leading blanks and the line end stripped).
"""

from __future__ import annotations

import http.client
import re
import socket
from collections.abc import Iterator

MAX_LINE = 65536  # http.client's _MAXLINE
MAX_HEADERS = 100  # http.client's _MAXHEADERS
_LEGAL_NAME = re.compile(rb"[^:\s][^:\r\n]*").fullmatch  # http.client's _is_legal_header_name
_ILLEGAL_VALUE = re.compile(rb"\n(?![ \t])|\r(?![ \t\n])").search  # http.client's _is_illegal_header_value
BODYLESS_REQUEST_METHODS = frozenset({"POST", "PUT", "PATCH"})  # http.client sends Content-Length: 0 for these


class AnswerHeaders:
    """A service answer's headers, in order, as ``http.client.HTTPMessage`` offered them: ``items()``,
    ``keys()``, a case-insensitive ``get`` / ``[]`` of the first value (None when absent) and ``in``."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]]):
        self._items = items

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keys(self) -> list[str]:
        return [name for name, _ in self._items]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)

    def get(self, name: str, default: str | None = None) -> str | None:
        lowered = name.lower()
        for key, value in self._items:
            if key.lower() == lowered:
                return value
        return default

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get_all(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self._items if key.lower() == lowered]


class Answer:
    __slots__ = ("status", "headers", "data", "will_close")

    def __init__(self, status: int, headers: AnswerHeaders, data: bytes, will_close: bool):
        self.status, self.headers, self.data, self.will_close = status, headers, data, will_close


class Wire:
    """One kept-alive connection: the socket and a buffered reader of it."""

    __slots__ = ("sock", "reader", "host")

    def __init__(self, sock: socket.socket, host: str):
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.host = host  # the Host header, as http.client sends it

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()

    def exchange(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        """Sends one request and reads its whole answer."""
        self.sock.sendall(request_bytes(method, target, self.host, body, headers))
        return read_answer(self.reader, method)


def request_bytes(method: str, target: str, host: str, body: bytes | None, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1".encode("ascii"),
        b"Host: " + host.encode("idna"),
        b"Accept-Encoding: identity",
    ]
    for name, value in headers.items():
        encoded_name, encoded_value = name.encode("ascii"), value.encode("latin-1")
        if not _LEGAL_NAME(encoded_name):
            raise ValueError(f"Invalid header name {encoded_name!r}")
        if _ILLEGAL_VALUE(encoded_value):
            raise ValueError(f"Invalid header value {encoded_value!r}")
        lines.append(encoded_name + b": " + encoded_value)
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    elif method in BODYLESS_REQUEST_METHODS:
        lines.append(b"Content-Length: 0")
    lines.append(b"\r\n")
    head = b"\r\n".join(lines)
    return head + body if body else head


def _line(reader) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise http.client.LineTooLong("header line")
    return line


def read_answer(reader, method: str) -> Answer:
    while True:
        line = _line(reader)
        if not line:
            raise http.client.RemoteDisconnected("Remote end closed connection without response")
        version, _, rest = line.decode("iso-8859-1").rstrip("\r\n").partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
            raise http.client.BadStatusLine(line.decode("iso-8859-1"))
        status = int(code)
        headers = _read_headers(reader)
        if status >= 200 or status == 101:
            break  # 1xx interim answers (100 Continue) are skipped, as http.client does
    items = headers
    lowered = {name.lower(): value for name, value in reversed(items)}  # first value wins
    connection = (lowered.get("connection") or "").lower()
    if version == "HTTP/1.1":
        will_close = "close" in connection
    else:
        will_close = not (lowered.get("keep-alive") or "keep-alive" in connection)
    if method == "HEAD" or status < 200 or status in (204, 304):
        return Answer(status, AnswerHeaders(items), b"", will_close)
    if "chunked" in (lowered.get("transfer-encoding") or "").lower():
        return Answer(status, AnswerHeaders(items), _read_chunked(reader), will_close)
    length = lowered.get("content-length")
    if length is not None:
        try:
            size = int(length)
        except ValueError:
            size = -1
        if size >= 0:
            data = reader.read(size)
            if len(data) < size:
                raise http.client.IncompleteRead(data, size - len(data))
            return Answer(status, AnswerHeaders(items), data, will_close)
    return Answer(status, AnswerHeaders(items), reader.read(), True)  # read until the service closes


def _read_headers(reader) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    while True:
        line = _line(reader)
        if line in (b"\r\n", b"\n", b""):
            return items
        if len(items) >= MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        text = line.decode("iso-8859-1")
        if text[0] in " \t" and items:  # an obsolete folded line continues the previous value
            name, value = items[-1]
            items[-1] = (name, value + "\r\n" + text.rstrip("\r\n"))
            continue
        name, colon, value = text.partition(":")
        if not colon:
            continue  # not a header line (the email parser set it aside as a defect)
        items.append((name, value.lstrip(" \t").rstrip("\r\n")))


def _read_chunked(reader) -> bytes:
    chunks: list[bytes] = []
    while True:
        line = _line(reader)
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise http.client.IncompleteRead(b"".join(chunks)) from None
        if size == 0:
            while _line(reader) not in (b"\r\n", b"\n", b""):  # trailers, dropped as http.client does
                pass
            return b"".join(chunks)
        chunk = reader.read(size)
        if len(chunk) < size:
            raise http.client.IncompleteRead(b"".join(chunks) + chunk, size - len(chunk))
        chunks.append(chunk)
        reader.read(2)  # the CRLF after the chunk
