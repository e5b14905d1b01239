from classifier.data import scan_folder, validate_files
from classifier.samples import build_sample_dataset, real_photos


def test_the_sample_dataset_is_generated_and_keeps_the_real_photos_out(tmp_path):
    """The real photos are what the model is measured with: training on them would measure nothing."""
    photos = real_photos()
    assert any(path.name == "chelsea.png" and label == "cat" for path, label in photos)
    assert any(path.name == "test2.jpeg" and label == "dog" for path, label in photos)  # catsordogs is installed
    root = build_sample_dataset(tmp_path / "samples")
    report = validate_files(root, scan_folder(root))
    assert report.rejected == [] and report.duplicates == []
    assert report.class_counts == {"cat": 20, "dog": 20}
    real_hashes = {path.read_bytes() for path, _ in photos}
    assert not any((root / f.relpath).read_bytes() in real_hashes for f in report.valid)
