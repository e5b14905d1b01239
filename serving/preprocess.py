"""The `Preprocess` class of the `pets` endpoint, which clearml-serving loads from its service task's artifact
(`python -m serving.setup` uploads this file). It answers with the registry's production model, which
`serving.production` follows; classes and preprocessing come from the model's checkpoint, so a grown class set
needs no change here. This repository is installed where the inference service runs."""

from serving import engine
from serving.production import FOLLOWER


class Preprocess:
    def __init__(self):
        self.model_endpoint = None  # set by clearml-serving before load()

    def load(self, local_file_name: str):
        FOLLOWER.start(self.model_endpoint.model_id, local_file_name)

    def preprocess(self, body, state: dict, collect_custom_statistics_fn=None):
        return engine.decode(body)

    def process(self, data, state: dict, collect_custom_statistics_fn=None) -> dict:
        model_id, predictor = FOLLOWER.current()  # one snapshot: a swap from here on does not change this answer
        return engine.answer(predictor, model_id, data)

    def postprocess(self, data: dict, state: dict, collect_custom_statistics_fn=None) -> dict:
        return data
