from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from classifier.evaluate import evaluate_checkpoint
from classifier.images import decode_image
from classifier.predict import Predictor
from classifier.synthetic import make_image


def test_predictions_cover_all_classes_and_match_validation(full_result, cat_dog):
    root, manifest = cat_dog
    predictor = Predictor(full_result.checkpoint)
    assert predictor.classes == ["cat", "dog"]
    images = [decode_image((root / f.relpath).read_bytes()) for f in manifest.val]
    results = predictor.predict_batch(images)
    for result in results:
        assert set(result) == {"cat", "dog"} and sum(result.values()) == pytest.approx(1.0, abs=1e-5)
    accuracy = sum(max(r, key=r.get) == f.label for r, f in zip(results, manifest.val, strict=True)) / len(results)
    # The same preprocessing as validation, so the same accuracy as the checkpoint's own validation metrics.
    assert (
        accuracy
        == full_result.metrics["accuracy"]
        == evaluate_checkpoint(full_result.checkpoint, root, manifest.val)["accuracy"]
    )
    assert predictor.predict(images[0]) == pytest.approx(results[0], abs=1e-5)


def test_predictor_is_thread_safe_and_accepts_any_mode(full_result):
    predictor = Predictor(full_result.checkpoint)
    images = [make_image(label, i, size=72) for label in ("cat", "dog") for i in range(100, 106)]
    expected = [predictor.predict(image) for image in images]
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(predictor.predict, images * 3))
    for got, want in zip(parallel, expected * 3, strict=True):
        assert got == pytest.approx(want, abs=1e-5)
    grey = images[0].convert("L")
    assert set(predictor.predict(grey)) == {"cat", "dog"}
    assert predictor.predict_batch([]) == []
    assert set(predictor.predict(Image.new("RGBA", (50, 90)))) == {"cat", "dog"}
