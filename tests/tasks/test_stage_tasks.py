"""The four stage tasks as real ClearML tasks (one process each) against the session's embedded server."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
from clearml import Model, Task

from devstack.agents import execute_task
from loop import datasets, registry, settings, stages
from loop.errors import StageError
from tasks import bootstrap_dataset
from tasks import register as register_stage
from tasks.evaluate import EVALUATION_ARTIFACT
from tasks.prepare_data import load_split
from tests import support

pytestmark = pytest.mark.slow

TRAIN_ARGS = ("--mode", "head", "--epochs", "3", "--image-size", "64", "--num-workers", "0", "--device", "cpu")


@pytest.fixture(scope="module")
def env(clearml_env):
    return dict(clearml_env)


@pytest.fixture(scope="module")
def dataset_id(tmp_path_factory):
    """Cats and dogs plus an empty file, a non-image and an exact duplicate."""
    folder = support.image_folder(tmp_path_factory.mktemp("stage-data") / "base", ["cat", "dog"], 16)
    (folder / "cat" / "empty.jpg").write_bytes(b"")
    (folder / "dog" / "notes.jpg").write_text("not an image")
    shutil.copy(folder / "cat" / "cat_00000.jpg", folder / "cat" / "zz_copy.jpg")
    return datasets.create_version(folder)


def train_and_evaluate(env, prepare_id: str, *train_args: str) -> SimpleNamespace:
    support.run_module(env, "tasks.train", "--prepare-task-id", prepare_id, *train_args)
    train = support.newest_task("train")
    model_id = train.models["output"][-1].id
    support.run_module(env, "tasks.evaluate", "--prepare-task-id", prepare_id, "--model-id", model_id)
    return SimpleNamespace(train=train, evaluate=support.newest_task("evaluate"), model_id=model_id)


def register(env, run: SimpleNamespace, *register_args: str) -> SimpleNamespace:
    previous = registry.production_model()
    support.run_module(env, "tasks.register_model", "--evaluate-task-id", run.evaluate.id, *register_args)
    run.register = support.newest_task("register_model")
    run.previous_production = previous.id if previous else None
    return run


def train_evaluate_register(env, prepare_id: str, *train_args: str) -> SimpleNamespace:
    return register(env, train_and_evaluate(env, prepare_id, *train_args))


@pytest.fixture(scope="module")
def prepare(env, dataset_id):
    support.run_module(env, "tasks.prepare_data", "--dataset-id", dataset_id)
    return support.newest_task("prepare_data")


@pytest.fixture(scope="module")
def good(env, prepare):
    """A model trained from scratch on the split: it separates the classes, so the gate promotes it."""
    return train_evaluate_register(env, prepare.id, "--parent-model-id", "none", *TRAIN_ARGS)


def test_prepare_data_stores_the_split_and_reports_bad_files(prepare, dataset_id):
    assert prepare.get_status() == "completed"
    assert prepare.get_parameter("General/dataset_id") == dataset_id
    split = load_split(prepare.id)
    assert split.dataset_id == dataset_id
    assert split.classes == ["cat", "dog"]
    assert len(split.train) + len(split.val) == 32
    assert split.val, "a 20 % split of 32 files must not be empty"
    rejected = {item["relpath"] for item in split.report["rejected"]}
    assert rejected == {"cat/empty.jpg", "dog/notes.jpg"}
    assert [item["relpath"] for item in split.report["duplicates"]] == ["cat/zz_copy.jpg"]


def test_prepare_data_fails_clearly_on_an_unknown_dataset(env):
    result = support.run_module(env, "tasks.prepare_data", "--dataset-id", "no-such-dataset", check=False)
    assert result.returncode != 0
    assert "dataset 'no-such-dataset' not found" in result.stdout


def test_train_registers_the_model_on_the_files_server(good, dataset_id, clearml_server):
    model = Model(model_id=good.model_id)
    assert model.framework == "PyTorch"
    assert model.labels == {"cat": 0, "dog": 1}
    assert model.url.startswith(clearml_server.files_url)
    assert model.project == Task.get_project_id(settings.PROJECT)
    assert model.get_metadata("dataset_id") == dataset_id
    assert model.get_metadata("parent_model_id") == ""
    assert registry.load_checkpoint(model.id).classes == ["cat", "dog"]
    scalars = good.train.get_reported_scalars()
    assert len(scalars["accuracy"]["val"]["x"]) == 3, "one validation accuracy per epoch"


def test_the_class_map_is_a_parameter_written_back_and_recorded_with_the_model(env, prepare, good):
    automatic = "cat: 281-285; dog: 151-268"
    assert good.train.get_parameter("General/class_map") == automatic  # what ran, for the UI and a clone
    assert Model(model_id=good.model_id).get_metadata("class_map") == automatic
    assert registry.load_checkpoint(good.model_id).class_map == {
        "cat": list(range(281, 286)),
        "dog": list(range(151, 269)),
    }

    # A user's edit: dog learned from examples alone, cat from one ImageNet class.
    support.run_module(
        env,
        "tasks.train",
        "--prepare-task-id",
        prepare.id,
        "--parent-model-id",
        "none",
        "--class-map",
        "cat: 281; dog: none",
        *TRAIN_ARGS,
    )
    train = support.newest_task("train")
    edited = train.models["output"][-1].id
    assert train.get_parameter("General/class_map") == "cat: 281; dog: none"
    assert Model(model_id=edited).get_metadata("class_map") == "cat: 281; dog: none"
    assert registry.load_checkpoint(edited).class_map == {"cat": [281], "dog": []}

    result = support.run_module(
        env, "tasks.train", "--prepare-task-id", prepare.id, "--class-map", "cat: 1000", *TRAIN_ARGS, check=False
    )
    assert result.returncode != 0 and "class_map" in result.stdout and "0-999" in result.stdout


def test_evaluate_scores_the_candidate_on_the_validation_split(good):
    evaluation = stages.task_artifact(good.evaluate.id, EVALUATION_ARTIFACT)
    assert evaluation["model_id"] == good.model_id
    assert evaluation["candidate"]["accuracy"] >= 0.9
    assert evaluation["production_model_id"] == good.previous_production
    plots = {plot["metric"] for plot in good.evaluate.get_reported_plots()}
    assert {"confusion matrix", "per-class metrics"} <= plots


def test_gate_publishes_a_good_model_and_moves_the_production_tag(good):
    model = Model(model_id=good.model_id)
    assert model.published
    assert settings.PRODUCTION_TAG in model.tags and settings.CANDIDATE_TAG not in model.tags
    assert registry.production_model().id == good.model_id
    assert "promoted" in model.comment and "not promoted" not in model.comment
    assert model.get_metadata("promotion").startswith("promoted")
    if good.previous_production:
        assert settings.PRODUCTION_TAG not in Model(model_id=good.previous_production).tags


def test_gate_refuses_a_worse_model(env, prepare, good):
    worse = train_evaluate_register(
        env, prepare.id, "--parent-model-id", "none", *TRAIN_ARGS[:-6], "--epochs", "1", "--lr", "1e-9"
    )
    model = Model(model_id=worse.model_id)
    assert not model.published
    assert settings.PRODUCTION_TAG not in model.tags
    assert "not promoted" in model.comment
    assert registry.production_model().id == good.model_id
    decision = stages.task_artifact(worse.register.id, "decision")
    assert decision["promoted"] is False and decision["compared_with"] == good.model_id
    assert worse.register.get_user_properties(value_only=True)["compared_with"] == good.model_id


def test_a_template_clone_runs_on_an_agent_with_its_edited_parameters(env, prepare, dataset_id, tmp_path):
    templates = register_stage.register_templates()
    assert register_stage.register_templates() == templates, "registering again must update the same templates"
    clone = Task.clone(source_task=templates["prepare_data"], name="prepare_data (edited)")
    clone.set_parameters({"General/dataset_id": dataset_id, "General/val_fraction": 0.5})
    result = execute_task(env, tmp_path, clone.id, timeout=180)
    assert result.returncode == 0, result.stdout[-4000:]
    clone.reload()
    assert clone.get_status() == "completed"
    wide, narrow = load_split(clone.id), load_split(prepare.id)
    # A file's side depends on its hash alone: raising the fraction only moves files into validation.
    assert {f.relpath for f in narrow.val} < {f.relpath for f in wide.val}


def test_each_template_cloned_with_its_defaults_is_completed_by_an_agent(env, good, dataset_id, tmp_path):
    """No upstream ids: prepare_data and train split the newest dataset version themselves, train starts from
    production, evaluate scores the production model, register_model judges the newest evaluation."""
    templates = register_stage.register_templates()

    def run_clone(stage: str, **parameters) -> Task:
        clone = Task.clone(source_task=templates[stage], name=f"{stage} (defaults)")
        if parameters:
            clone.update_parameters({f"General/{name}": value for name, value in parameters.items()})
        result = execute_task(env, tmp_path / stage, clone.id, timeout=300)
        assert result.returncode == 0, result.stdout[-4000:]
        clone.reload()
        assert clone.get_status() == "completed"
        return clone

    prepare = run_clone("prepare_data")
    assert load_split(prepare.id).dataset_id == prepare.get_parameter("General/dataset_id") == dataset_id

    upstream = Task.get_task(templates["train"]).data.hyperparams["General"]["prepare_task_id"]
    assert upstream.value == "" and "empty: split the newest dataset version" in upstream.description  # the UI's
    train = run_clone("train", mode="head", epochs=2, image_size=64, num_workers=0, device="cpu")
    assert train.get_parameter("General/prepare_task_id") == train.id  # its own split, stored on it
    assert load_split(train.id).dataset_id == datasets.latest_version_id() == dataset_id
    production = registry.production_model().id
    assert train.get_parameter("General/parent_model_id") == production

    evaluate = run_clone("evaluate")
    evaluation = stages.task_artifact(evaluate.id, EVALUATION_ARTIFACT)
    assert (evaluation["model_id"], evaluation["dataset_id"]) == (production, dataset_id)
    assert evaluation["production_model_id"] is None and evaluation["candidate"]["accuracy"] >= 0.9

    register = run_clone("register_model")
    assert register.get_parameter("General/evaluate_task_id") == evaluate.id  # the newest evaluation
    decision = stages.task_artifact(register.id, "decision")
    assert (decision["model_id"], decision["promoted"]) == (production, True)
    assert decision["reason"] == "already the production model" and decision["judgements"] == []
    assert registry.production_model().id == production


def test_bootstrap_refuses_a_second_base_version(dataset_id, tmp_path):
    with pytest.raises(StageError, match="already has version"):
        bootstrap_dataset.bootstrap(support.image_folder(tmp_path, ["cat", "dog"], 1))


def test_a_candidate_evaluated_against_an_older_production_model_is_evaluated_again(env, prepare, good):
    """Two candidates evaluated against the same production model; the first one's promotion makes the second
    one's evaluation stale, so register_model evaluates it again against the new production model."""
    first = train_and_evaluate(env, prepare.id, "--parent-model-id", "none", *TRAIN_ARGS)
    second = train_and_evaluate(env, prepare.id, "--parent-model-id", "none", *TRAIN_ARGS)
    whatever = ("--tolerance", "1", "--log-loss-tolerance", "1000")
    register(env, first, *whatever)  # promoted whatever the scores: this test is about the order
    assert registry.production_model().id == first.model_id
    register(env, second, *whatever)
    decision = stages.task_artifact(second.register.id, "decision")
    assert decision["evaluated_against"] == good.model_id
    assert decision["reevaluated_against"] == [first.model_id]
    assert [judgement["compared_with"] for judgement in decision["judgements"]] == [first.model_id]
    assert decision["compared_with"] == first.model_id and decision["promoted"]
    assert Model(model_id=second.model_id).get_metadata("compared_with") == first.model_id
    assert registry.production_model().id == second.model_id


def test_templates_registered_with_a_base_docker_image_pass_the_skip_variables_to_its_container(env):
    templates = register_stage.register_templates(base_docker="pets-loop:0.1.0")
    try:
        for template_id in templates.values():
            container = Task.get_task(task_id=template_id).data.container
            assert container["image"] == "pets-loop:0.1.0"
            assert "-e CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1" in container["arguments"]
            assert "-e CLEARML_AGENT_SKIP_PIP_VENV_INSTALL=/usr/local/bin/python3" in container["arguments"]
    finally:  # the templates other tests clone run on agents without docker
        for template_id in templates.values():
            Task.get_task(task_id=template_id).set_base_docker(docker_image="", docker_arguments="")
