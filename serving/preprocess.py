"""The `Preprocess` class of the `pets` endpoint, which clearml-serving loads from its service task's artifact
(`python -m serving.setup` uploads this file). It answers with the registry's production model, which
`serving.production` follows; classes and preprocessing come from the model's checkpoint, so a grown class set
needs no change here. This repository is installed where the inference service runs."""

import time

from serving import engine, metrics
from serving.production import FOLLOWER


class Preprocess:
    def __init__(self):
        self.model_endpoint = None  # set by clearml-serving before load()

    def load(self, local_file_name: str):
        metrics.start_exporter()
        FOLLOWER.start(self.model_endpoint.model_id, local_file_name)

    def preprocess(self, body, state: dict, collect_custom_statistics_fn=None):
        state["started"] = time.perf_counter()
        try:
            return engine.decode(body)
        except ValueError:
            metrics.REQUESTS.labels("refused").inc()
            raise

    def process(self, data, state: dict, collect_custom_statistics_fn=None) -> dict:
        model_id, predictor = FOLLOWER.current()  # one snapshot: a swap from here on does not change this answer
        answer = engine.answer(predictor, model_id, data)
        metrics.INFERENCE.observe(time.perf_counter() - state["started"])
        metrics.REQUESTS.labels("answered").inc()
        metrics.PREDICTIONS.labels(model_id, answer["label"]).inc()
        return answer

    def postprocess(self, data: dict, state: dict, collect_custom_statistics_fn=None) -> dict:
        return data
