"""The PostgreSQL activity table: settings and sink (the server is real: Debian's package)."""
