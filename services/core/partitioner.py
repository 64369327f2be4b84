"""Which partition a key belongs in: Kafka's murmur2 partitioner, in pure Python.

Every Accord producer uses it (librdkafka's `murmur2_random`, the Java client's and
Faust's default), so a listing's events, its table entry and its view rows share one
partition number. The ledger checks it on every event: a message on another partition
of its topic is refused, however authentic its bytes (`admission.gate`).
"""

from __future__ import annotations

SEED = 0x9747B28C
M = 0x5BD1E995
MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash exactly as Kafka's `Utils.murmur2` computes it (unsigned here)."""
    length = len(data)
    h = (SEED ^ length) & MASK
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * M) & MASK
        k ^= k >> 24
        k = (k * M) & MASK
        h = ((h * M) & MASK) ^ k
    tail = data[length - length % 4 :]
    if tail:
        for i in reversed(range(len(tail))):
            h ^= tail[i] << (8 * i)
        h = (h * M) & MASK
    h ^= h >> 13
    h = (h * M) & MASK
    h ^= h >> 15
    return h


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` (Java's `toPositive(murmur2) % n`)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
