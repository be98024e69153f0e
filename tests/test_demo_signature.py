"""``multissl demo --modality signature``: its synthetic signatures, its scoring and a seconds-long CLI run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from multissl.demo import DEMOS
from multissl.demo_signature import SYSTEMS, _eers, _scores, synthetic_signatures

pytestmark = pytest.mark.usefixtures("one_thread")


def test_registered_as_the_signature_demo():
    assert DEMOS["signature"] == "multissl.demo_signature:signature_demo"


def test_synthetic_signatures_are_seeded_and_forgeries_are_slower():
    sigs, writer, forged = synthetic_signatures(writers=5, genuine=6, forgeries=4, seed=3)
    again = synthetic_signatures(writers=5, genuine=6, forgeries=4, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(sigs, again[0]))
    assert not np.array_equal(sigs[0], synthetic_signatures(writers=5, genuine=6, forgeries=4, seed=4)[0][0])
    assert len(sigs) == 50 and np.array_equal(np.bincount(writer), [10] * 5)
    assert np.array_equal(forged, np.tile([False] * 6 + [True] * 4, 5))
    for s in sigs:  # x, y, time (ms, 100 Hz), pen_down, pressure; no pressure while the pen is up
        assert s.dtype == np.float32 and s.shape[1] == 5 and np.isfinite(s).all()
        assert np.allclose(np.diff(s[:, 2]), 10.0) and set(np.unique(s[:, 3])) <= {0.0, 1.0}
        assert (s[s[:, 3] == 0, 4] == 0).all() and (s[:, 4] >= 0).all()
    # a skilled forger traces more slowly: per writer, forgeries take longer on average
    length = np.array([len(s) for s in sigs])
    for w in range(5):
        assert length[(writer == w) & forged].mean() > length[(writer == w) & ~forged].mean()


def test_scores_enrol_genuine_only_and_normalise_by_the_reference_spread():
    # one writer: 4 genuine (0-3) and 2 forgeries (4, 5); distances |a - b| on a line
    pos = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 12.0])
    dist = np.abs(pos[:, None] - pos[None, :])
    writer, forged = np.zeros(6, dtype=np.int64), np.array([False] * 4 + [True] * 2)
    s = _scores(dist, writer, forged, np.arange(6), enrol=3, seed=0)[0]
    assert len(s["genuine"]) == 1 and len(s["skilled"]) == 2

    def expected(refs):  # nearest reference / mean distance between the references
        spread = np.mean([abs(pos[a] - pos[b]) for a in refs for b in refs if a != b])
        (q,) = set(range(4)) - set(refs)
        return [np.abs(pos[q] - pos[refs]).min() / spread], [np.abs(p - pos[refs]).min() / spread for p in (10, 12)]

    # the references are 3 of the 4 genuine signatures, never a forgery
    assert any(np.allclose(s["genuine"], g) and np.allclose(s["skilled"], f)
               for g, f in map(expected, ([0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3])))
    # e.g. references 0, 1, 2: spread 4/3; genuine 3 -> 1 / (4/3); forgery 10 -> 8 / (4/3)
    assert np.allclose(expected([0, 1, 2])[0], [0.75]) and np.allclose(expected([0, 1, 2])[1], [6.0, 7.5])
    assert _eers({0: s}) == (0.0, 0.0)  # every forgery is farther than the genuine query


def test_cli_signature_demo_writes_metrics_and_plot(tmp_path):
    from multissl.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--modality", "signature", "--epochs", "1", "--seeds", "1", "--no-progress",
                 "--output", str(out)]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert [r["system"] for r in saved["rows"]] == list(SYSTEMS)
    for r in saved["rows"]:
        assert 0.0 <= r["eer_pooled"] <= 1.0 and 0.0 <= r["eer_per_writer"] <= 1.0
        assert len(r["eer_pooled_per_seed"]) == 1 and r["eer_pooled_std"] == 0.0
    # writer-independent: no evaluated writer's signature was seen in pretraining
    assert not set(saved["protocol"]["pretrain_writers"]) & set(saved["protocol"]["eval_writers"])
    # DTW separates the slow, shaky forgeries from the genuine signatures far better than chance
    assert saved["rows"][2]["eer_pooled"] < 0.25
    assert saved["config"]["epochs"] == 1
    assert (out / "score_histograms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "seed0" / "final" / "model.safetensors").is_file()


def test_zero_seeds_is_a_one_line_error(tmp_path, capsys):
    from multissl.cli import main

    assert main(["demo", "--modality", "signature", "--seeds", "0", "--output", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--seeds must be at least 1" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "d").exists()
