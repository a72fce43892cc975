"""activity-sync delivery stage: the sink contract, the runner, providers and their fake servers."""
