"""The import direction of docs/architecture.md: numpy_ref stands on NumPy alone."""

import subprocess
import sys


def test_numpy_ref_imports_without_jax_or_torch() -> None:
    code = (
        "import sys, numpy_ref, numpy_ref.data, numpy_ref.spec\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.iter_modules(numpy_ref.__path__):\n"
        "    importlib.import_module('numpy_ref.' + m.name)\n"
        "heavy = {'jax', 'jaxlib', 'optax', 'torch'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
