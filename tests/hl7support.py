"""HL7 test support (shared by tests/hl7 and tests/worklist): a plain-socket MLLP client and message builders."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from helpers import RunningNode

SB, EB = b"\x0b", b"\x1c\x0d"


class MllpClient:
    """A plain-socket MLLP client: send bytes, read one framed answer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_ack(self) -> bytes:
        while EB not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the node")
            self.buf += chunk
        end = self.buf.index(EB)
        block, self.buf = self.buf[:end], self.buf[end + 2:]
        assert block.startswith(SB), block[:50]
        return block[1:]

    def send(self, message: bytes | str, encoding: str = "utf-8") -> bytes:
        data = message.encode(encoding) if isinstance(message, str) else message
        self.send_raw(SB + data + EB)
        return self.read_ack()

    def close(self) -> None:
        self.sock.close()


def msa(ack: bytes, encoding: str = "utf-8") -> list[str]:
    seg = next(s for s in ack.decode(encoding).split("\r") if s.startswith("MSA"))
    return seg.split("|")


def err(ack: bytes, encoding: str = "utf-8") -> list[str] | None:
    seg = next((s for s in ack.decode(encoding).split("\r") if s.startswith("ERR")), None)
    return None if seg is None else seg.split("|")


def message(msg_type: str, control_id: str, *segments: str, facility: str = "HOSP", charset: str = "") -> str:
    msh = (f"MSH|^~\\&|HIS|{facility}|ECGNODE|CARDIO|20260301120000||{msg_type}|{control_id}|P|2.5.1"
           + (f"||||||{charset}" if charset else ""))
    return "\r".join([msh, *segments]) + "\r"


@dataclass
class Hl7Running:
    running: RunningNode
    hl7: Any

    @property
    def mllp_port(self) -> int:
        return self.hl7.address[1]

    def client(self) -> MllpClient:
        return MllpClient(self.mllp_port)


@pytest.fixture
def hl7_factory(node_factory) -> Iterator:
    started: list[Any] = []

    def start(**overrides: object) -> Hl7Running:
        from dicom_ecg_node.hl7.runtime import Hl7Node

        overrides.setdefault("hl7_port", 0)
        running = node_factory(**overrides)
        hl7 = Hl7Node(running.config, running.ingest.catalog, audit=running.node.audit)
        hl7.start()
        started.append(hl7)
        return Hl7Running(running, hl7)

    yield start
    for hl7 in started:
        hl7.stop()


@pytest.fixture
def hl7_node(hl7_factory) -> Hl7Running:
    return hl7_factory()


@pytest.fixture
def mllp(hl7_node: Hl7Running) -> Iterator[MllpClient]:
    client = hl7_node.client()
    yield client
    client.close()
