import pkgutil
import subprocess
import sys

import pytest

import classifier


@pytest.mark.slow
def test_core_library_never_imports_clearml():
    modules = [f"classifier.{m.name}" for m in pkgutil.iter_modules(classifier.__path__)]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "print(sorted(name for name in sys.modules if name.split('.')[0] == 'clearml'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "classifier.train" in modules and out.stdout.strip() == "[]"
