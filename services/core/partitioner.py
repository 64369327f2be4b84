"""Which partition a key belongs in: Kafka's murmur2 partitioner, in pure Python.

Every Accord producer uses it (librdkafka's `murmur2_random`, the Java client's and
Faust's default), so a listing's events, its table entry and its view rows share one
partition number. The ledger checks it on every event: a message on another partition
of its topic is refused, however authentic its bytes (`admission.gate`).
"""

from __future__ import annotations

import struct
from functools import cache

SEED = 0x9747B28C
M = 0x5BD1E995
MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash exactly as Kafka's `Utils.murmur2` computes it (unsigned here).

    The key's whole 4-byte little-endian words are unpacked in one call and its last 1 to 3 bytes
    read as one little-endian number (Java xors them in byte by byte: the same bits); masking
    once after a multiplication and an xor is the same as masking each (tests/unit/core/test_partitioner.py
    holds Java's byte-by-byte transcription and compares)."""
    length = len(data)
    h = (SEED ^ length) & MASK
    for k in _words(length >> 2).unpack_from(data):
        k = (k * M) & MASK
        h = ((h * M) ^ ((k ^ (k >> 24)) * M)) & MASK
    rest = length & 3
    if rest:
        h = ((h ^ int.from_bytes(data[length - rest :], "little")) * M) & MASK
    h ^= h >> 13
    h = (h * M) & MASK
    return h ^ (h >> 15)


@cache
def _words(count: int) -> struct.Struct:
    """The unpacker of `count` little-endian 32-bit words (one per key length seen: a few)."""
    return struct.Struct(f"<{count}I")


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` (Java's `toPositive(murmur2) % n`)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
