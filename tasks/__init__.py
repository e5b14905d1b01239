"""ClearML entry points: the four pipeline stages, their template registration, dataset bootstrap, rollback.

Each stage module defines `STAGE` (a `loop.stages.Stage`) and a `main` that runs it with `loop.stages.main`.
"""

STAGES = ("prepare_data", "train", "evaluate", "register_model")
