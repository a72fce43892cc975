"""activity-sync stream stage: the Faust app, topics, codecs, and the pure enrichment functions."""
