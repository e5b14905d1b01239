"""Small helpers every package of the project may use; this package imports nothing else of the project."""
