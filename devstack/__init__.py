"""The one-command loop (`python -m devstack run`) and the agent launcher."""
