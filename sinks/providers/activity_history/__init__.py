"""The Activity History provider: an append-only SQLite store an operator queries."""
