"""MLLP (HL7 v2.5.1 Appendix C, Minimal Lower Layer Protocol): framing, a streaming reader, a listener, a sender.

A message travels as ``0x0B`` + message + ``0x1C 0x0D``. python-hl7's own MLLP streams are asyncio streams with a
64 KiB buffer limit and one fixed text encoding per connection; here the charset is decided per message (MSH-18),
results carry PDFs of several MB, and the node's listeners are threads, so framing is a small byte-level reader
(:class:`MllpReader`) and parsing stays python-hl7's (:mod:`dicom_ecg_node.hl7.messages`).

Framing errors never drop the connection silently: the reader reports them as :class:`FramingError` items, which
the listener answers with an AR acknowledgement, and the connection carries on with the next start block.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("dicom_ecg_node.hl7")

START = b"\x0b"
END = b"\x1c\x0d"
#: Largest message accepted (bytes); results with an embedded PDF are a few MB.
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
_CHUNK = 256 * 1024


def frame(message: bytes) -> bytes:
    """Wrap ``message`` in an MLLP block (HL7 v2.5.1 Appendix C.4.3)."""
    return START + message + END


@dataclass(frozen=True, slots=True)
class FramingError:
    """Bytes that are not a well-formed MLLP block: what was wrong and (the start of) what was received."""

    reason: str
    data: bytes


class MllpReader:
    """Split a byte stream into MLLP blocks, incrementally, at any message size up to ``max_message``.

    Parameters
    ----------
    max_message : int
        Largest message accepted; a bigger one is reported as a :class:`FramingError` and skipped to its end block.
    """

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._buf = bytearray()
        self._inside = False
        self._oversize = False
        self._scan = 0  # where to resume looking for the end block (the buffer before it holds none)

    def feed(self, data: bytes) -> list[bytes | FramingError]:
        """Add received bytes; return every complete message (bytes) or framing error they complete."""
        buf = self._buf
        buf += data
        out: list[bytes | FramingError] = []
        while True:
            if not self._inside:
                start, end = buf.find(START), buf.find(END)
                if end != -1 and (start == -1 or end < start):
                    # An end block without a start block: a frame that lost its 0x0B, or garbage.
                    out.append(FramingError("MLLP framing error: end block (0x1C 0x0D) without a start block "
                                            "(0x0B)", bytes(buf[:min(end, 4096)])))
                    del buf[:end + len(END)]
                    continue
                if start == -1:
                    if len(buf) > self.max_message:
                        out.append(FramingError("MLLP framing error: data outside any block", bytes(buf[:4096])))
                        del buf[:-1]
                    return out
                if bytes(buf[:start]).strip():
                    out.append(FramingError("MLLP framing error: data outside any block, before a start block "
                                            "(0x0B)", bytes(buf[:min(start, 4096)])))
                del buf[:start + 1]
                self._inside, self._oversize, self._scan = True, False, 0
                continue
            end = buf.find(END, self._scan)
            nested = buf.find(START, self._scan, end if end != -1 else len(buf))
            if nested != -1:
                out.append(FramingError("MLLP framing error: start block (0x0B) inside a message without its end "
                                        "block", bytes(buf[:min(nested, 4096)])))
                del buf[:nested + 1]
                self._oversize, self._scan = False, 0
                continue
            if end == -1:
                if len(buf) > self.max_message:
                    self._oversize = True
                    del buf[:-1]  # keep a trailing 0x1C: it may be the first half of the end block
                self._scan = max(0, len(buf) - 1)
                return out
            if self._oversize:
                out.append(FramingError(f"message larger than {self.max_message} bytes", b""))
            else:
                out.append(bytes(buf[:end]))
            del buf[:end + len(END)]
            self._inside, self._scan = False, 0

    @property
    def partial(self) -> bool:
        """Whether a started message has not been terminated yet."""
        return self._inside


#: A message processor: (message bytes, peer address) → acknowledgement bytes (unframed).
Processor = Callable[[bytes, str], bytes]
#: What to answer for a framing error: (error, peer address) → acknowledgement bytes (unframed).
FramingHandler = Callable[[FramingError, str], bytes]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], listener: MllpListener) -> None:
        self.listener = listener
        super().__init__(address, _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        listener: MllpListener = self.server.listener  # type: ignore[attr-defined]
        sock: socket.socket = self.request
        peer = self.client_address[0]
        listener._track(sock, True)
        reader = MllpReader(listener.max_message)
        log.info("MLLP connection from %s:%s", *self.client_address[:2])
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                try:
                    data = sock.recv(_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                for item in reader.feed(data):
                    if isinstance(item, FramingError):
                        log.warning("MLLP from %s: %s", peer, item.reason)
                        answer = listener.on_framing_error(item, peer)
                    else:
                        answer = listener.processor(item, peer)
                    sock.sendall(frame(answer))
            if reader.partial:
                log.warning("MLLP connection from %s closed in the middle of a message (no end block)", peer)
        except OSError as exc:
            log.warning("MLLP connection from %s failed: %s", peer, exc)
        finally:
            listener._track(sock, False)
            log.info("MLLP connection from %s closed", peer)


class MllpListener:
    """A threaded MLLP server: one thread per connection, several messages per connection, one ACK per message.

    Parameters
    ----------
    host, port : str, int
        Address to bind (port 0: any free port, see :attr:`address`).
    processor : callable
        ``(message bytes, peer ip) -> ack bytes``; must not raise.
    on_framing_error : callable
        ``(FramingError, peer ip) -> ack bytes`` for bytes that are not a well-formed block.
    max_message : int
        Largest message accepted.
    """

    def __init__(self, host: str, port: int, processor: Processor, on_framing_error: FramingHandler, *,
                 max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self.host, self.port = host, port
        self.processor = processor
        self.on_framing_error = on_framing_error
        self.max_message = max_message
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._sockets.add if add else self._sockets.discard)(sock)

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        if self._server is None:
            raise RuntimeError("MLLP listener not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind and accept connections in a background thread."""
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="ecg-node-mllp", daemon=True)
        self._thread.start()
        log.info("HL7 MLLP listener on %s:%d", *self.address)

    def stop(self) -> None:
        """Stop accepting and close open connections (a message being processed finishes its transaction)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class MllpError(OSError):
    """The receiver could not be reached, or answered no well-formed acknowledgement in time."""


def send_message(host: str, port: int, message: bytes, *, timeout: float = 30.0) -> bytes:
    """Send one message over a new MLLP connection and return the receiver's acknowledgement (unframed).

    Raises
    ------
    MllpError
        Connection refused or reset, timeout, or a reply that is not one MLLP block.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(frame(message))
            reader = MllpReader()
            while True:
                data = sock.recv(_CHUNK)
                if not data:
                    raise MllpError(f"{host}:{port} closed the connection without an acknowledgement")
                for item in reader.feed(data):
                    if isinstance(item, FramingError):
                        raise MllpError(f"{host}:{port}: {item.reason}")
                    return item
    except TimeoutError as exc:
        raise MllpError(f"{host}:{port}: no acknowledgement within {timeout:.0f} s") from exc
    except MllpError:
        raise
    except OSError as exc:
        raise MllpError(f"{host}:{port}: {exc.strerror or exc}") from exc
