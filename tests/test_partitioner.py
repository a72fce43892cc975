"""The producers' partitioner chooses what aiokafka's default (Java's murmur2) chooses, from memory."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from core.partitioner import MemoPartitioner, murmur2


def test_every_key_lands_where_the_default_puts_it_first_time_and_remembered():
    memo, default = MemoPartitioner(size=50), DefaultPartitioner()
    keys = [f"contact-{i:05d}".encode() for i in range(300)] + [b"", "Ünïcode-ключ".encode()]
    for n in (1, 3, 6, 12):
        parts = list(range(n))
        for _ in range(2):  # computed, then from the table (or computed again after the table filled)
            assert [memo(k, parts, parts) for k in keys] == [default(k, parts, parts) for k in keys]
    assert len(memo._hashes) <= 50


def test_a_key_goes_where_the_java_client_puts_it():
    # Kafka's UtilsTest.testMurmur2 values; Java's partition is toPositive(murmur2(key)) % partitions
    java = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536, b"abc": 479470107}
    memo = MemoPartitioner()
    for key, h in java.items():
        for n in (3, 6, 7):
            assert memo(key, list(range(n)), []) == (h & 0x7FFFFFFF) % n


def test_no_key_goes_to_an_available_partition():
    memo = MemoPartitioner()
    assert {memo(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}


def test_murmur2_is_aiokafkas_for_keys_of_every_length():
    rng = random.Random(3)
    for _ in range(5000):
        key = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 70)))
        assert murmur2(key) == aiokafka_murmur2(key), key
