"""What brings data into Kafka: the Push API ingest server (``sources.push``)."""
