"""Action Network people polled for the Action Network ↔ Mobile Commons sync (``anmc:``)."""
