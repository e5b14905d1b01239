"""Names shared by every part of the loop, in one place. Each can be overridden by an environment variable
(read at import), so the app, the stages, the pipeline and the agents agree as long as they share an environment.

    CLASSIFIER_PROJECT          ClearML project of the stage runs, the pipeline and the model registry
    CLASSIFIER_DATASET_PROJECT  ClearML project of the dataset (default: the project)
    CLASSIFIER_DATASET_NAME     the dataset that receives feedback versions
    CLASSIFIER_PRODUCTION_TAG   the model tag the app serves
    CLASSIFIER_PIPELINE_NAME    the retraining pipeline (its runs live in <project>/.pipelines/<name>)
    CLASSIFIER_SERVICES_QUEUE   pipeline controllers and the trigger scheduler
    CLASSIFIER_DEFAULT_QUEUE    prepare_data, evaluate, register_model
    CLASSIFIER_TRAIN_QUEUE      train
"""

from __future__ import annotations

import os


def _setting(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


PROJECT = _setting("CLASSIFIER_PROJECT", "selfimproving-classifier")
TEMPLATE_PROJECT = f"{PROJECT}/templates"
DATASET_PROJECT = _setting("CLASSIFIER_DATASET_PROJECT", PROJECT)
DATASET_NAME = _setting("CLASSIFIER_DATASET_NAME", "pets")
PRODUCTION_TAG = _setting("CLASSIFIER_PRODUCTION_TAG", "production")
CANDIDATE_TAG = "candidate"
PIPELINE_NAME = _setting("CLASSIFIER_PIPELINE_NAME", "retrain")
PIPELINE_PROJECT = f"{PROJECT}/.pipelines/{PIPELINE_NAME}"  # where the SDK keeps the controller and its runs
SERVICES_QUEUE = _setting("CLASSIFIER_SERVICES_QUEUE", "services")
DEFAULT_QUEUE = _setting("CLASSIFIER_DEFAULT_QUEUE", "default")
TRAIN_QUEUE = _setting("CLASSIFIER_TRAIN_QUEUE", "gpu")
