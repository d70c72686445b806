"""Protobuf wire-format pieces for the few messages the hot path encodes itself (the prediction log's
records, ModelInfer responses from a cached head). The bytes are the standard encoding: the generated
classes parse them, and the tests check that they do."""

from __future__ import annotations

_SMALL = [bytes((i,)) for i in range(128)]


def varint(n: int) -> bytes:
    """A base-128 varint (negative numbers as their 64-bit two's complement, as protobuf does)."""
    if 0 <= n < 128:
        return _SMALL[n]
    out = bytearray()
    n &= (1 << 64) - 1
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def length_delimited(field: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or embedded message)."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def varint_field(field: int, n: int) -> bytes:
    """A varint field; nothing for 0 (proto3's default is not written)."""
    return varint(field << 3) + varint(n) if n else b""
