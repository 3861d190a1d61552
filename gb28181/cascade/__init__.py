"""The cascade toward upper platforms."""
