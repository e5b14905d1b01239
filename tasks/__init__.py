"""ClearML entry points: the four pipeline stages, their template registration, dataset bootstrap, rollback."""
