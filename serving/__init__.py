"""The production model served by ClearML Serving (clearml-serving's inference service, `custom` engine).

`serving/preprocess.py` is the `Preprocess` class clearml-serving loads from its service task; `serving.engine`
does the work (no ClearML inside); `serving.production` follows and preloads the registry's production model;
`python -m serving.setup` creates the service and its endpoint (see `loop.clearml_serving`).
"""
