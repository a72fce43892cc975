"""Mobile Commons profiles polled for the Action Network ↔ Mobile Commons sync (``anmc:``)."""
