"""Traffic generators for the system: series patterns, the data simulator, the score load generator."""
