"""Frames on the socket between the engine and an execution's process: one kind byte, a length, the payload.

Kinds: TASK (engine to execution: the task as JSON), RESULT (the result's JSON text), ERROR (JSON
[status, code, message]) and EXIT (written by the fork server once the process has ended: its exit code, as
text). Nothing here unpickles or evaluates: what comes back from a sandbox is data from code the engine does
not trust. Free of Django: both sides of the socket use it.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

TASK, RESULT, ERROR, EXIT = b"T", b"R", b"E", b"X"
_HEADER = struct.Struct("!cQ")
_CHUNK = 1024 * 1024


class Closed(Exception):
    """The other end closed the socket before a whole frame arrived."""


class TooLarge(Exception):
    """A frame announced more bytes than the reader accepts."""


def send(sock: socket.socket, kind: bytes, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(kind, len(payload)))
    sock.sendall(payload)


def receive(sock: socket.socket, limit: int, waiting: Callable[[], None] = lambda: None) -> tuple[bytes, bytearray]:
    """One whole frame of at most `limit` bytes (else TooLarge).

    On a socket with a timeout, `waiting()` runs at each timeout and may raise to give up. The payload grows as
    it arrives, so a header that announces more than is sent costs nothing.
    """
    kind, length = _HEADER.unpack(_exactly(sock, _HEADER.size, waiting))
    if length > limit:
        raise TooLarge(length)
    return kind, _exactly(sock, length, waiting)


def _exactly(sock: socket.socket, size: int, waiting: Callable[[], None]) -> bytearray:
    buffer = bytearray()
    while len(buffer) < size:
        try:
            chunk = sock.recv(min(size - len(buffer), _CHUNK))
        except TimeoutError:
            waiting()
            continue
        if not chunk:
            raise Closed
        buffer += chunk
    return buffer
