import hashlib
import json

import pytest

from classifier import synthetic
from classifier.data import LabeledFile, SplitManifest, prepare_split, split_by_hash


def _fake_files(label, start, count):
    return [
        LabeledFile(f"{label}/{i}.jpg", label, hashlib.sha256(f"{label}-{i}".encode()).hexdigest())
        for i in range(start, start + count)
    ]


def test_split_is_deterministic_and_stratified():
    files = _fake_files("cat", 0, 1000) + _fake_files("dog", 0, 1000) + _fake_files("rabbit", 0, 50)
    train, val = split_by_hash(files, 0.2)
    assert (train, val) == split_by_hash(list(reversed(files)), 0.2)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(files)
    for label, total in (("cat", 1000), ("dog", 1000)):
        share = sum(f.label == label for f in val) / total
        assert 0.16 <= share <= 0.24, (label, share)
    assert 2 <= sum(f.label == "rabbit" for f in val) <= 20


def test_adding_or_removing_files_never_moves_existing_ones():
    version1 = _fake_files("cat", 0, 300) + _fake_files("dog", 0, 300)
    version2 = version1[50:] + _fake_files("cat", 300, 200) + _fake_files("rabbit", 0, 40)
    side1 = {f: "val" for f in split_by_hash(version1)[1]}
    train2, val2 = split_by_hash(version2)
    side2 = {f: "val" for f in val2} | {f: "train" for f in train2}
    for f in version1[50:]:
        assert side2[f] == side1.get(f, "train"), f
    # Same content under another path (renamed or re-uploaded) lands on the same side: no train/val leak.
    renamed = [LabeledFile("cat/renamed_" + f.relpath.split("/")[1], f.label, f.sha256) for f in version1]
    assert {f.sha256 for f in split_by_hash(renamed)[1]} == {f.sha256 for f in split_by_hash(version1)[1]}


def test_split_rejects_bad_fraction():
    with pytest.raises(ValueError):
        split_by_hash(_fake_files("cat", 0, 3), 1.0)


def test_manifest_round_trip_uses_relative_paths_and_resolves_elsewhere(tmp_path):
    root = synthetic.make_image_folder(tmp_path / "stage_a", ("cat", "dog"), per_class=10, size=40)
    manifest, _ = prepare_split(root, dataset_id="ds-1")
    text = manifest.to_json()
    assert str(tmp_path) not in text
    assert all(not entry["relpath"].startswith("/") for entry in json.loads(text)["train"])

    copy = synthetic.make_image_folder(tmp_path / "stage_b", ("cat", "dog"), per_class=10, size=40)
    loaded = SplitManifest.from_json(text)
    assert loaded == manifest
    assert loaded.resolve(copy, verify_hashes=True) == copy
    assert SplitManifest.load(manifest.save(tmp_path / "split.json")) == manifest

    (copy / manifest.val[0].relpath).unlink()
    with pytest.raises(FileNotFoundError, match=manifest.val[0].relpath):
        loaded.resolve(copy)
    with pytest.raises(ValueError, match="Not a split manifest"):
        SplitManifest.from_json('{"train": []}')
