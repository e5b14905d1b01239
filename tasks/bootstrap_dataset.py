"""Create the base version of the ClearML dataset from a folder, the offline sample set, or Microsoft PetImages.

The folder layout is `<root>/<class>/<image>`; the class names are the folder names. Bad images are kept in the
dataset and reported (not used) by prepare_data.

    python -m tasks.bootstrap_dataset --folder path/to/images
    python -m tasks.bootstrap_dataset --sample
    python -m tasks.bootstrap_dataset --petimages [--url URL | --archive kagglecatsanddogs.zip]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from loop import datasets, settings
from loop.errors import StageError, exit_on_error


def bootstrap(source: Path, allow_existing: bool = False) -> str:
    """Upload `source` as the first (parentless) version; refuses when a version exists already."""
    existing = datasets.latest_version_id()
    if existing and not allow_existing:
        raise StageError(
            f"dataset {settings.DATASET_PROJECT}/{settings.DATASET_NAME} already has version {existing}; "
            "new images go into child versions (pass --allow-existing to add another base version anyway)"
        )
    return datasets.create_version(source)


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", type=Path, help="folder with one sub-folder per class")
    source.add_argument("--sample", action="store_true", help="small offline set of generated images")
    source.add_argument("--petimages", action="store_true", help="Microsoft PetImages (Kaggle cats vs dogs)")
    parser.add_argument("--url", default=None, help="PetImages archive URL (default: the Microsoft download)")
    parser.add_argument("--archive", type=Path, default=None, help="an already downloaded PetImages zip")
    parser.add_argument("--allow-existing", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.folder:
            folder = args.folder
        elif args.sample:
            from classifier.samples import build_sample_dataset

            folder = Path(build_sample_dataset(Path(tmp) / "sample"))
        else:
            from classifier.petimages import download_petimages

            folder = Path(tmp) / "petimages"
            kwargs = {key: value for key, value in (("url", args.url), ("archive", args.archive)) if value}
            # The downloaded archive must not end up in the dataset: only the extracted cat/ and dog/ folders.
            print(download_petimages(folder, keep_archive=False, **kwargs).summary())
        dataset_id = bootstrap(folder, args.allow_existing)
    print(f"dataset {settings.DATASET_PROJECT}/{settings.DATASET_NAME} base version: {dataset_id}")


if __name__ == "__main__":
    main()
