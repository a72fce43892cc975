"""activity-sync's command line: the composition root that starts both stages."""
