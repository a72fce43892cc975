"""The producers' partitioner: aiokafka's default, each key's hash computed once.

aiokafka's ``DefaultPartitioner`` hashes every key with a pure-Python murmur2 (the Java client's,
so a key lands on the partition a Java or librdkafka-murmur2 producer chooses): about 3 µs for a
contact key, on every record the stream stage writes. Keys repeat (one member's activities share
their key), so the hash is remembered in a bounded table and the partition is the same one.
"""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner, murmur2

__all__ = ["MemoPartitioner"]


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
