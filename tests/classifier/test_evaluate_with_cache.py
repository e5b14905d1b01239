import pytest

from classifier.embeddings import EmbeddingCache
from classifier.evaluate import evaluate_checkpoint


@pytest.mark.parametrize("result_name", ["head_result", "full_result"])
def test_scoring_from_the_embedding_cache_matches_a_full_forward_pass(request, cat_dog, tmp_path, result_name):
    root, manifest = cat_dog
    checkpoint = request.getfixturevalue(result_name).checkpoint
    cache = EmbeddingCache(tmp_path / "cache")
    direct = evaluate_checkpoint(checkpoint, root, manifest.val)
    first = evaluate_checkpoint(checkpoint, root, manifest.val, cache=cache)
    assert len(list((tmp_path / "cache").rglob("*.*"))) >= len(manifest.val)  # the first call filled the cache
    again = evaluate_checkpoint(checkpoint, root, manifest.val, cache=cache)
    for metrics in (first, again):
        assert metrics["confusion_matrix"] == direct["confusion_matrix"]
        assert metrics["accuracy"] == direct["accuracy"]
        assert metrics["log_loss"] == pytest.approx(direct["log_loss"], rel=1e-4, abs=1e-6)
