"""The generic HTTP webhook provider: a signed JSON batch POST (see sink.py for the wire contract)."""
