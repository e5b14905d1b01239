from classifier.data import scan_folder, validate_files
from classifier.samples import build_sample_dataset, real_photos


def test_sample_dataset_has_real_photos_and_enough_images_per_class(tmp_path):
    photos = real_photos()
    assert any(path.name == "chelsea.png" and label == "cat" for path, label in photos)
    root = build_sample_dataset(tmp_path / "samples")
    report = validate_files(root, scan_folder(root))
    assert report.rejected == [] and report.duplicates == []
    assert report.class_counts["cat"] >= 20 and report.class_counts["dog"] >= 20
    real = [f for f in report.valid if f.relpath.split("/")[1].startswith("real_")]
    assert len(real) == len(photos)
    assert {f.label for f in real} <= {"cat", "dog"}
