"""The REST API (/api/v1/...) end to end over HTTP, with a plain client, on the app as `python -m app` serves it."""

from __future__ import annotations

import httpx
import pytest
from app_testing import UPLOAD_LIMIT_MB, image_bytes, png_header_only


def test_predict_one_image_as_the_raw_body(local_app):
    ui, url = local_app
    response = httpx.post(f"{url}api/v1/predict", content=image_bytes("dog", 5), headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["label"] == "dog" and prediction["model_id"] == "model-two"
    assert set(prediction["probabilities"]) == {"cat", "dog"}
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert 0 < prediction["latency_ms"] < 10_000 and isinstance(prediction["prediction_id"], int)
    assert ui.service.store.items() == []  # predicting alone stores nothing


def test_predict_a_batch_keeps_the_order(local_app):
    _, url = local_app
    names = ["cat", "dog", "cat", "cat"]
    files = [("files", (f"{i}.png", image_bytes(name, 40 + i), "image/png")) for i, name in enumerate(names)]
    response = httpx.post(f"{url}api/v1/predict", files=files)
    assert response.status_code == 200, response.text
    assert [p["label"] for p in response.json()["predictions"]] == names


def test_feedback_closes_the_loop_on_its_prediction(local_app):
    ui, url = local_app
    data = image_bytes("cat", 61)
    predicted = httpx.post(f"{url}api/v1/predict", content=data).json()["predictions"][0]
    response = httpx.post(
        f"{url}api/v1/feedback",
        files={"image": ("pet.png", data, "image/png")},
        data={"label": "rabbit", "prediction_id": str(predicted["prediction_id"])},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "stored": True,
        "label": "rabbit",
        "sha256": predicted["sha256"],
        "prediction": "cat",
        "model_id": "model-two",
    }
    (item,) = ui.service.store.items()
    assert item.original_name == "pet.png" and ui.service.store.image_path(item).read_bytes() == data
    quality = httpx.get(f"{url}api/v1/quality").json()["models"][0]
    assert quality["predictions"] == 1  # the feedback used the prediction made before: not predicted again
    assert quality["agreement"] == {"feedback": 1, "agreed": 0, "rate": 0.0}
    assert quality["unknown_labels"] == 1
    # Raw body and query parameters work too.
    again = httpx.post(f"{url}api/v1/feedback?label=dog", content=image_bytes("dog", 62))
    assert again.status_code == 200 and again.json()["label"] == "dog"


def test_model_health_and_openapi(local_app):
    _, url = local_app
    model = httpx.get(f"{url}api/v1/model").json()
    assert model["model_id"] == "model-two" and model["classes"] == ["cat", "dog"]
    assert model["dataset_id"] == "dataset-two"
    assert httpx.get(f"{url}healthz").json() == {"status": "ok", "model_id": "model-two"}
    paths = httpx.get(f"{url}api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/predict", "/api/v1/feedback", "/api/v1/model", "/api/v1/quality", "/healthz"} <= set(paths)
    assert "multipart/form-data" in paths["/api/v1/predict"]["post"]["requestBody"]["content"]
    assert httpx.get(url).status_code == 200  # the UI is still served at /


@pytest.mark.parametrize(
    ("make", "status", "reason"),
    [
        (lambda: {"content": b"name,age\ncat,3\n"}, 400, "not an image"),
        (lambda: {"content": png_header_only(9_000, 5_000)}, 400, "the limit is"),
        (lambda: {"content": b""}, 400, "empty"),
        (
            lambda: {"files": [("f", ("a.png", image_bytes("cat", i), "image/png")) for i in range(17)]},
            400,
            "files is 16",
        ),
        (lambda: {"content": b"\0" * int(UPLOAD_LIMIT_MB * 2**20 * 17)}, 413, "request body"),
    ],
    ids=["non-image", "huge", "empty", "too many images", "body too large"],
)
def test_bad_requests_are_refused_with_a_reason(local_app, make, status, reason):
    ui, url = local_app
    response = httpx.post(f"{url}api/v1/predict", **make())
    assert response.status_code == status and reason in response.json()["detail"]
    assert ui.service.store.items() == []


def test_bad_label_is_refused(local_app):
    ui, url = local_app
    response = httpx.post(f"{url}api/v1/feedback?label=../etc", content=image_bytes("cat", 63))
    assert response.status_code == 422 and "use only lowercase" in response.json()["detail"]
    assert ui.service.store.items() == []
