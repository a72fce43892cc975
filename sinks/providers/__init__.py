"""One package per provider: settings declaration, sink, and the fake server of the vendor API."""
