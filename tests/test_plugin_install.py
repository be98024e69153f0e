"""A third-party modality installed with pip is found through the ``multissl.adapters`` entry
points and trains, saves and reloads like a built-in one (examples/multissl-tabular-plugin)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "multissl-tabular-plugin"

USE_PLUGIN = """
import numpy as np
from multissl.adapters import get_adapter, list_adapters
from multissl.api import pretrain
from multissl.model import SSLModel
assert "tabular" in list_adapters(), list_adapters()
rng = np.random.default_rng(0)
table = rng.normal(size=(64, 5)).astype("float32")
model = pretrain(table, adapter="tabular", epochs=1, batch_size=16, output_dir="run", progress=False)
loaded = SSLModel.from_pretrained("run/final")
assert np.allclose(loaded.embed(table), model.embed(table), atol=1e-6)
print("plugin ok", type(get_adapter("tabular")).__module__)
"""


def test_pip_installed_plugin_is_discovered_and_trains(tmp_path):
    import shutil

    source = tmp_path / "plugin"  # build from a copy: the build's own build/ and egg-info stay out of the tree
    shutil.copytree(PLUGIN, source)
    target = tmp_path / "site"
    # a real install of the example distribution (its own build backend, no dependencies pulled:
    # multissl and torch are already importable here)
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                              str(source)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    assert list(target.glob("multissl_tabular-0.1.0.dist-info/entry_points.txt"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    run = subprocess.run([sys.executable, "-c", USE_PLUGIN], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "plugin ok multissl_tabular" in run.stdout


def test_without_the_install_the_adapter_is_unknown(tmp_path):
    run = subprocess.run([sys.executable, "-c", "from multissl.adapters import list_adapters; print(list_adapters())"],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and "tabular" not in run.stdout and "image" in run.stdout
