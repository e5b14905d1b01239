"""The app through its HTTP API (gradio_client), as a user's browser or script reaches it."""

from __future__ import annotations

import sys

import httpx
import numpy as np
import pytest
import torch
from app_testing import UPLOAD_LIMIT_MB, app_config, encode, image_bytes, png_header_only
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from app.application import GIL_SWITCH_INTERVAL_S, create_app
from app.config import parse_args
from app.model_holder import ServedModel
from classifier.images import InvalidImage, sha256_bytes
from classifier.predict import Predictor
from classifier.synthetic import make_image


def upload(tmp_path, data: bytes, name: str = "upload.png"):
    path = tmp_path / name
    path.write_bytes(data)
    return handle_file(str(path))


def confidences(label_value: dict) -> dict[str, float]:
    return {entry["label"]: entry["confidence"] for entry in label_value["confidences"]}


def test_prediction_covers_every_class_and_reports_latency(local_app, tmp_path):
    app, url = local_app
    client = Client(url, verbose=False)
    for class_name in ("cat", "dog"):
        label, latency_ms = client.predict(
            upload(tmp_path, image_bytes(class_name, 500), f"{class_name}.png"), api_name="/predict"
        )
        probabilities = confidences(label)
        assert set(probabilities) == {"cat", "dog"}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert label["label"] == class_name
        assert 0 < latency_ms < 10_000
    assert app.service.store.items() == []  # predicting alone stores nothing
    shown = client.predict(api_name="/served_model")
    assert "model-two" in shown and "cat, dog" in shown and "dataset-two" in shown


def test_api_docs_list_exactly_the_named_endpoints(local_app):
    """The page's own events (preview, statistics, label choices, ...) stay out of the API docs, and the named
    endpoints are documented under their own names."""
    _, url = local_app
    named = {"/predict", "/feedback", "/publish", "/served_model"}
    info = httpx.get(f"{url}gradio_api/info").json()
    assert set(info["named_endpoints"]) == named and info["unnamed_endpoints"] == {}
    api = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == named and api["unnamed_endpoints"] == {}
    paths = httpx.get(f"{url}gradio_api/openapi.json").json()["paths"]
    assert {path for path in paths if path.startswith("/gradio_api/call/v2/")} == {
        f"/gradio_api/call/v2{name}" for name in named
    }


def test_run_history_is_off(local_app):
    _, url = local_app
    assert httpx.get(f"{url}config").json()["run_history"] is False
    assert httpx.get(f"{url}gradio_api/runs").status_code == 404
    assert httpx.post(f"{url}gradio_api/run-history/connect", json={}).status_code == 404


def test_feedback_stores_original_bytes_with_the_prediction(local_app, tmp_path):
    app, url = local_app
    client = Client(url, verbose=False)
    cat, rabbit = image_bytes("cat", 600), image_bytes("rabbit", 601, fmt="JPEG")

    assert "Stored as **cat**" in client.predict(upload(tmp_path, cat), "cat", api_name="/feedback")
    message = client.predict(upload(tmp_path, rabbit, "bunny.jpg"), "  Rabbit ", api_name="/feedback")
    assert "Stored as **rabbit**" in message
    again = client.predict(upload(tmp_path, rabbit, "again.jpg"), "dog", api_name="/feedback")
    assert "already stored as **rabbit**" in again

    store = app.service.store
    items = {item.label: item for item in store.items()}
    assert set(items) == {"cat", "rabbit"}
    assert store.image_path(items["rabbit"]).read_bytes() == rabbit
    assert items["rabbit"].file_name == "image.jpg" and items["rabbit"].original_name == "bunny.jpg"
    assert items["cat"].sha256 == sha256_bytes(cat)
    assert items["cat"].model_id == "model-two" and items["cat"].prediction == "cat"
    assert set(items["cat"].probabilities) == {"cat", "dog"}
    assert [(c.label, c.pending, c.published) for c in store.label_counts()] == [("cat", 1, 0), ("rabbit", 1, 0)]
    assert app.service.label_choices() == ["cat", "dog", "rabbit"]


@pytest.mark.parametrize(
    ("label", "reason"),
    [("", "empty"), ("guinea pig", "' '"), ("x" * 40, "at most 32"), ("../../etc", "'.' '/'")],
)
def test_invalid_label_is_refused_and_nothing_stored(local_app, tmp_path, label, reason):
    app, url = local_app
    with pytest.raises(AppError, match="label") as error:
        Client(url, verbose=False).predict(upload(tmp_path, image_bytes("cat", 700)), label, api_name="/feedback")
    assert reason in str(error.value)
    assert app.service.store.items() == []


def _truncated_jpeg() -> bytes:
    data = image_bytes("dog", 3, size=256, fmt="JPEG")
    return data[: len(data) // 2]


def _noise_png(side: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels))


REJECTED = {
    "non-image": (lambda: b"name,age\ncat,3\n", "not an image"),
    "corrupt": (lambda: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not an image"),
    "truncated": (_truncated_jpeg, "corrupt or truncated"),
    "zero-byte": (lambda: b"", "empty"),
    "decompression bomb": (lambda: png_header_only(100_000, 100_000), "too many pixels"),
    "huge dimensions": (lambda: png_header_only(9_000, 5_000), "9000x5000 pixels; the limit is"),
    "tiny": (lambda: image_bytes("cat", 1, size=8), "at least 32 px"),
    "thin strip": (lambda: png_header_only(4_000, 2), "at least 32 px"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_bad_input_is_refused_with_a_reason_and_nothing_stored(local_app, tmp_path, case):
    app, url = local_app
    make, reason = REJECTED[case]
    client = Client(url, verbose=False)
    with pytest.raises(AppError) as error:
        client.predict(upload(tmp_path, make()), api_name="/predict")
    assert reason in str(error.value)
    with pytest.raises(AppError) as error:
        client.predict(upload(tmp_path, make()), "cat", api_name="/feedback")
    assert reason in str(error.value)
    assert app.service.store.items() == []
    # The app is still serving.
    label, _ = client.predict(upload(tmp_path, image_bytes("dog", 9), "ok.png"), api_name="/predict")
    assert label["label"] == "dog"


def test_upload_over_the_size_limit_is_refused(local_app, tmp_path):
    app, url = local_app
    too_big = _noise_png(700)
    assert len(too_big) > UPLOAD_LIMIT_MB * 2**20
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        Client(url, verbose=False).predict(upload(tmp_path, too_big), "cat", api_name="/feedback")
    # A client that ignores the advertised limit is stopped by the server.
    response = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", too_big, "image/png")})
    assert response.status_code == 413
    # The same limit holds in the service itself, whatever transport delivers the bytes.
    with pytest.raises(InvalidImage, match="the limit is 1.0 MiB"):
        app.service.predict(too_big)
    assert app.service.store.items() == []


def _animated_gif() -> bytes:
    frames = [make_image("cat", 11, size=64), make_image("dog", 12, size=64)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _cmyk_jpeg() -> bytes:
    return encode(make_image("cat", 13, size=64).convert("CMYK"), "JPEG")


def _alpha_png() -> bytes:
    image = make_image("cat", 14, size=64).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize((64, 64)))
    return encode(image)


def _sixteen_bit_png() -> bytes:
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    return encode(Image.fromarray(ramp))


def _exif_rotated_jpeg() -> bytes:
    image = make_image("dog", 15, size=64).resize((96, 48))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return encode(image, "JPEG", exif=exif)


ACCEPTED = {
    "animated GIF": (_animated_gif, "gif"),
    "CMYK": (_cmyk_jpeg, "jpg"),
    "alpha": (_alpha_png, "png"),
    "16-bit": (_sixteen_bit_png, "png"),
    "EXIF-rotated": (_exif_rotated_jpeg, "jpg"),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_unusual_but_valid_images_are_classified_and_stored_verbatim(local_app, tmp_path, case):
    app, url = local_app
    make, extension = ACCEPTED[case]
    data = make()
    client = Client(url, verbose=False)
    label, _ = client.predict(upload(tmp_path, data, f"image.{extension}"), api_name="/predict")
    assert sum(confidences(label).values()) == pytest.approx(1.0, abs=1e-4)
    assert "Stored as **cat**" in client.predict(upload(tmp_path, data), "cat", api_name="/feedback")
    (item,) = app.service.store.items()
    assert item.file_name == f"image.{extension}"
    assert app.service.store.image_path(item).read_bytes() == data


def test_exif_orientation_is_applied_before_classifying(local_app):
    app, _ = local_app
    assert app.service.decode(_exif_rotated_jpeg()).size == (48, 96)


class RecordingPredictor(Predictor):
    """Records the batch size and torch threads of each forward it runs."""

    def __init__(self, checkpoint):
        super().__init__(checkpoint)
        self.forwards: list[tuple[int, int]] = []

    def forward(self, batch):
        self.forwards.append((len(batch), torch.get_num_threads()))
        return super().forward(batch)


@pytest.mark.slow
def test_forwards_run_with_the_torch_threads_and_batch_size_the_options_say(tmp_path, checkpoints):
    config = app_config(tmp_path, "--cpu-threads", "1", "--max-batch", "4")
    before, switch_before = torch.get_num_threads(), sys.getswitchinterval()
    recording = RecordingPredictor(checkpoints["two"])
    model = ServedModel("recording", "recording", recording, checkpoints["two"])
    with create_app(config, None, model=model) as app, app.serve(background=True, quiet=True) as server:
        files = [("files", (f"{i}.png", image_bytes("cat", 800 + i), "image/png")) for i in range(6)]
        response = httpx.post(f"{server.url}api/v1/predict", files=files)
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 6
        assert sum(size for size, _ in recording.forwards) == 6
        assert {threads for _, threads in recording.forwards} == {1}
        assert sys.getswitchinterval() == GIL_SWITCH_INTERVAL_S  # the workers get the GIL back soon after each op
        assert max(size for size, _ in recording.forwards) <= 4
    # torch's setting and the switch interval are process-wide: closing the app puts them back
    assert (torch.get_num_threads(), sys.getswitchinterval()) == (before, switch_before)


@pytest.mark.parametrize(
    "option",
    [
        ["--concurrency", "0"],
        ["--cpu-threads", "-1"],
        ["--cpu-workers", "-1"],
        ["--max-batch", "0"],
        ["--concurrency", "x"],
    ],
)
def test_serving_options_out_of_range_are_refused(option, capsys):
    with pytest.raises(SystemExit):
        parse_args(option)
    assert option[0] in capsys.readouterr().err
