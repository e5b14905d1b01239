import shutil

import pytest
from PIL import Image

from classifier import synthetic
from classifier.data import prepare_split, scan_folder, validate_files
from classifier.preprocess import ImageFileDataset, eval_transform


@pytest.fixture
def messy_folder(tmp_path):
    root = synthetic.make_image_folder(tmp_path / "data", ("cat", "dog"), per_class=4, size=48)
    good_jpeg = (root / "cat" / "cat_00000.jpg").read_bytes()
    (root / "cat" / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "notes.jpg").write_text("this is not an image")
    (root / "dog" / "random.png").write_bytes(bytes(range(256)) * 8)
    Image.new("RGB", (8, 8), "red").save(root / "dog" / "tiny.png")
    shutil.copy(root / "cat" / "cat_00001.png", root / "cat" / "copy_of_1.png")
    shutil.copy(root / "dog" / "dog_00002.jpg", root / "cat" / "dog_in_cat_folder.jpg")
    (root / "dog" / ".DS_Store").write_bytes(b"\0\1")
    (root / "README.txt").write_text("files at the top level are not labelled")
    return root


def test_bad_files_are_reported_and_skipped(messy_folder):
    files = scan_folder(messy_folder)
    assert {f.relpath for f in files if f.relpath.startswith(".") or "/." in f.relpath} == set()
    assert "README.txt" not in {f.relpath for f in files}

    report = validate_files(messy_folder, files)
    reasons = {f.relpath: why for f, why in report.rejected}
    assert "truncated" in reasons["cat/truncated.jpg"]
    assert "empty" in reasons["cat/empty.jpg"]
    assert "not an image" in reasons["dog/notes.jpg"]
    assert "not an image" in reasons["dog/random.png"]
    assert "at least 32 px" in reasons["dog/tiny.png"]
    # The same picture labelled cat and dog: neither copy can be trusted.
    assert "labelled as cat and dog" in reasons["cat/dog_in_cat_folder.jpg"]
    assert "labelled as cat and dog" in reasons["dog/dog_00002.jpg"]
    assert len(reasons) == 7

    assert [(d.relpath, k.relpath) for d, k in report.duplicates] == [("cat/copy_of_1.png", "cat/cat_00001.png")]
    assert report.class_counts == {"cat": 4, "dog": 3}
    assert {f.relpath for f in report.valid} == {
        "cat/cat_00000.jpg",
        "cat/cat_00001.png",
        "cat/cat_00002.jpg",
        "cat/cat_00003.png",
        "dog/dog_00000.jpg",
        "dog/dog_00001.png",
        "dog/dog_00003.png",
    }
    assert "7 valid" in report.summary() and report.to_dict()["class_counts"] == {"cat": 4, "dog": 3}

    # Everything reported valid loads for training.
    dataset = ImageFileDataset(messy_folder, report.valid, ["cat", "dog"], eval_transform(32, (0.5,) * 3, (0.5,) * 3))
    assert all(dataset[i][0].shape == (3, 32, 32) for i in range(len(dataset)))


def test_a_file_changed_after_scanning_is_rejected(tmp_path):
    root = synthetic.make_image_folder(tmp_path, ("cat",), per_class=2, size=48)
    files = scan_folder(root)
    synthetic.make_image("cat", 7, size=48).save(root / files[0].relpath, format="JPEG")
    report = validate_files(root, files)
    assert [(f.relpath, "hash mismatch" in why) for f, why in report.rejected] == [(files[0].relpath, True)]


def test_prepare_split_refuses_a_folder_without_valid_images(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="No valid images"):
        prepare_split(tmp_path)
    with pytest.raises(FileNotFoundError):
        scan_folder(tmp_path / "missing")
