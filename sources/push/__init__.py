"""The Push API v2 (``../shared/seeds/push-api.txt``): an AMS pushes its contacts and lists over HTTP,
the ingest server validates them and writes them to Kafka (``push.contacts``, ``push.lists``)."""
