"""The ClearML retraining pipeline over the registered stage templates."""
