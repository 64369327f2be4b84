"""Kafka's murmur2 partitioner in pure Python: the Java client's own test vectors, and the word-wise
version against a byte-by-byte transcription of Java's code on any bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.partitioner import MASK, SEED, M, murmur2, partition_of

JAVA = {  # org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed 32-bit results)
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "signed"), JAVA.items())
def test_murmur2_matches_the_java_client(key: bytes, signed: int) -> None:
    assert murmur2(key) == signed & 0xFFFFFFFF


def test_the_partition_is_the_positive_hash_modulo_the_count() -> None:
    assert partition_of(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7
    assert {partition_of(f"L-{i}".encode(), 3) for i in range(50)} == {0, 1, 2}


def java_murmur2(data: bytes) -> int:
    """`Utils.murmur2` transcribed byte by byte, as it was before the word-wise version: the reference."""
    length = len(data)
    h = (SEED ^ length) & MASK
    for i in range(0, length - length % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
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


@settings(max_examples=2000)
@given(st.binary(max_size=200))
def test_murmur2_matches_the_byte_by_byte_transcription(data: bytes) -> None:
    assert murmur2(data) == java_murmur2(data)


@given(st.text(max_size=60), st.integers(min_value=1, max_value=1000))
def test_listing_ids_partition_as_the_transcription_does(listing_id: str, partitions: int) -> None:
    key = listing_id.encode()
    assert partition_of(key, partitions) == (java_murmur2(key) & 0x7FFFFFFF) % partitions
