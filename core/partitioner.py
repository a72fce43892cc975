"""The producers' partitioner: aiokafka's default, each key's hash computed once.

aiokafka's ``DefaultPartitioner`` hashes every key with a pure-Python murmur2 (the Java client's,
so a key lands on the partition a Java or librdkafka-murmur2 producer chooses): about 7 µs for a
41-byte key, on every record the stream stage writes. Keys repeat (one member's activities share
their key), so the hash is remembered in a bounded table, and computed (twice as fast) when it is
not; the partition is the same one.
"""

from __future__ import annotations

import struct

from aiokafka.partitioner import DefaultPartitioner

__all__ = ["MemoPartitioner", "murmur2"]

_M = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """The Java client's ``Utils.murmur2`` (unsigned), as aiokafka's, with the key's 4-byte words
    unpacked in one call rather than assembled byte by byte: about twice as fast (a test compares
    the two on random keys of every length)."""
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & 0xFFFFFFFF
        k ^= k >> 24
        h = ((h * _M) & 0xFFFFFFFF) ^ ((k * _M) & 0xFFFFFFFF)
    if length & 3:
        h = ((h ^ int.from_bytes(data[words * 4:], "little")) * _M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


class MemoPartitioner:
    """``partitioner=`` for an ``AIOKafkaProducer``: the default's choice for every key."""

    def __init__(self, size: int = 20_000) -> None:  # about 3 MB of 36-byte keys at most
        self.size = size
        self._hashes: dict[bytes, int] = {}
        self._default = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:  # no key: the default's random choice among available partitions
            return self._default(key, all_partitions, available)
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= self.size:
                self._hashes.clear()  # bounded: an unbounded key space starts the table again
            h = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[h % len(all_partitions)]
