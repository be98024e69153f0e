"""`multissl pretrain --adapter signature --data <folder of SVC2004 files>` and friends."""
from __future__ import annotations

import json

import numpy as np
import pytest

from multissl.cli import main
from tests.adapters.test_signature_io import synthetic_svc2004_folder


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_pretrain_and_embed_a_folder_of_svc2004_files(tmp_path, capsys):
    data = synthetic_svc2004_folder(tmp_path / "sigs", users=3, genuine=4, forgeries=2, length=25)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"encoder_kwargs": {"width": 16, "depth": 3}}))
    out = tmp_path / "run"
    assert main(["pretrain", "--adapter", "signature", "--data", str(data), "--output", str(out), "--epochs", "1",
                 "--batch-size", "8", "--config", str(config), "--no-progress"]) == 0
    saved = json.loads((out / "final" / "config.json").read_text())
    assert saved["adapter"] == "signature" and saved["method"] == "vicreg"
    assert saved["adapter_config"]["features"] == ["x", "y", "dx", "dy", "vx", "vy", "pressure", "pen_down", "time"]
    z_path = tmp_path / "z.npy"
    assert main(["embed", "--model", str(out / "final"), "--data", str(data), "--output", str(z_path)]) == 0
    z = np.load(z_path)
    assert z.shape == (18, 128) and np.isfinite(z).all()


@pytest.mark.parametrize("text, message", [
    ("3\n1 2 3 4 5 6 7\n1 2 3 4 5 6\n1 2 3 4 5 6 7\n",
     "line 3: malformed point line: expected 7 values like the first point line, got 6"),
    ("4\n1 2 3 4 5 6 7\n1 2 3 4 5 6 7\n1 2 3 4 5 6 7\n", "line 4: header (line 1) says 4 points but the file has 3 point lines"),
    ("1\n1 2 3 4 5 6 7\n", "line 2: a signature needs at least 2 points, got 1"),
], ids=["malformed-line", "header-count", "single-point"])
def test_a_bad_file_is_one_line_naming_file_and_line(tmp_path, capsys, text, message):
    data = synthetic_svc2004_folder(tmp_path / "sigs", users=2, genuine=2, forgeries=1, length=20)
    (data / "U2S2.TXT").write_text(text)
    code = main(["pretrain", "--adapter", "signature", "--data", str(data), "--output", str(tmp_path / "run"),
                 "--epochs", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err == f"multissl: error: {data / 'U2S2.TXT'} {message}"
    assert not (tmp_path / "run" / "final").exists()
