"""Asset checks of every catalog source: canaries on each run, freshness on a cadence."""
