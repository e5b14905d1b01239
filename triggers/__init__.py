"""ClearML TriggerScheduler that retrains on every new version of the feedback dataset."""
