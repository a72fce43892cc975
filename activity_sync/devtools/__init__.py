"""Development tooling: the local Kafka broker and the fake schema registry (never imported by production code)."""
