"""Add a feedback version (cats and dogs, a child of the newest version) to the configured server's dataset and
print its id.

    python -m tests.loop.new_version FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

from loop import datasets
from tests import support

if __name__ == "__main__":
    folder = support.image_folder(Path(sys.argv[1]), ["cat", "dog"], 8, start=500)
    print(datasets.create_version(folder, parent_id=datasets.latest_version_id()))
