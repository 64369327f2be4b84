"""Kafka's murmur2 partitioner in pure Python: the Java client's own test vectors."""

from __future__ import annotations

import pytest

from services.core.partitioner import murmur2, partition_of

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
