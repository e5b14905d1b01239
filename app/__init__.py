"""Gradio app: serves the production model from the ClearML registry and turns user feedback into dataset
versions. Run it with `python -m app`."""
