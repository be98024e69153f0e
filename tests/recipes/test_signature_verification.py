"""The signature_verification recipe end to end on a tiny synthetic SVC2004 folder (4 users)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from multissl.recipes import available_recipes
from multissl.recipes.signature_verification import FUSION_GRID, cross_fold_weights, main, user_folds
from tests.adapters.test_signature_io import synthetic_svc2004_folder
from tests.launch import launch_two

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "signature_verification.py"
TINY = ["--genuine", "6", "--enrol-from", "4", "--enrol", "2", "--trials", "2", "--epochs", "1", "--batch-size", "8",
        "--encoder-width", "8", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sig")
    synthetic_svc2004_folder(root / "data", users=4, genuine=6, forgeries=4, length=30, forgery_noise=120.0)
    threads = torch.get_num_threads()
    assert main(["--data", str(root / "data"), "--output", str(root / "out"), *TINY]) == 0
    torch.set_num_threads(threads)
    return root


def test_writes_metrics_det_plot_and_fold_encoders(run):
    out = run / "out"
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"]["folds"] == [[1, 2], [3, 4]]
    # each fold's encoder was pretrained only on the other fold's users
    assert [p["train_users"] for p in m["pretrain"]] == [[3, 4], [1, 2]]
    assert [p["num_signatures"] for p in m["pretrain"]] == [20, 20]
    for reduction in ("min", "mean"):
        for system in ("ssl", "dtw", "fused", "fused_cv"):
            r = m["eer_percent"][reduction][system]
            for kind in ("skilled", "random"):
                assert 0 <= r[kind]["per_user_eer"] <= 100 and 0 <= r[kind]["pooled_eer"] <= 100
            assert set(r["per_user"]) == {"1", "2", "3", "4"} and len(r["per_fold"]) == 2
        assert set(m["targets"][reduction]) >= {"ssl_within_1_point_of_dtw", "fused_beats_dtw_by_0.5",
                                                "fused_cv_beats_dtw_by_0.5"}
        assert m["eer_percent"][reduction]["fused"]["weights"] == [0.5, 0.5]
        assert all(w in FUSION_GRID for w in m["eer_percent"][reduction]["fused_cv"]["weights"])
    # the synthetic forgeries are slow and shaky: DTW separates them from the genuine signatures
    assert m["eer_percent"]["min"]["dtw"]["skilled"]["per_user_eer"] < 20
    t = m["timing"]
    # 2 folds x 2 users x 4 possible references x (12 fold genuine + 4 own forgeries)
    assert t["dtw_comparisons"] == 2 * 2 * 4 * 16 and t["ssl_signatures"] == 40
    assert t["dtw_ms_per_comparison"] > 0 and t["ssl_ms_per_verification"] > 0
    assert (out / "det.png").stat().st_size > 5000
    # every distance the protocol used, saved for re-scoring: symmetric, one per comparison
    d = np.load(out / "distances.npz")
    assert d["user"].tolist() == [u for u in range(1, 5) for _ in range(10)]
    for system in ("ssl", "dtw"):
        known = ~np.isnan(d[system])
        assert (known == known.T).all() and np.array_equal(d[system][known], d[system].T[known])
        assert (d[system][known] >= 0).all()
    assert np.isnan(d["dtw"][0, 20]) and np.isnan(d["ssl"][0, 20])  # users 1 and 3: different folds, never compared
    assert (out / "fold0" / "final" / "model.safetensors").is_file()
    assert (out / "fold1" / "final" / "model.safetensors").is_file()


def test_dtw_positives_light_views_and_segments(tmp_path, monkeypatch):
    """--positives dtw mines each fold's partners among its own pretraining signatures only;
    --augment light and --segments reach the adapter and the encoder."""
    import multissl.positives as positives_module
    from multissl.recipes import signature_verification as recipe

    synthetic_svc2004_folder(tmp_path / "data", users=4, genuine=6, forgeries=4, length=30, forgery_noise=120.0)
    tables = []
    real = positives_module.mutual_neighbours

    def spy(dist, k):
        tables.append((np.asarray(dist).shape, k))
        return real(dist, k)

    monkeypatch.setattr(positives_module, "mutual_neighbours", spy)
    threads = torch.get_num_threads()
    assert main(["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"), *TINY, "--positives", "dtw",
                 "--positive-neighbours", "2", "--augment", "light", "--segments", "4"]) == 0
    torch.set_num_threads(threads)
    assert tables == [((20, 20), 2), ((20, 20), 2)]  # one table per fold, over its 20 pretraining files
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for p in m["pretrain"]:
        assert p["training"]["positives"]["per_record"] == 2
        assert 0 < p["training"]["positives"]["records_with_partner"] <= 20
        assert p["encoder"]["kwargs"] == {"width": 8, "segments": 4}
    saved = json.loads((tmp_path / "out" / "fold0" / "final" / "config.json").read_text())
    assert {k: saved["adapter_config"][k] for k in recipe.LIGHT_AUGMENT} == recipe.LIGHT_AUGMENT
    assert m["args"]["positives"] == "dtw" and m["args"]["augment"] == "light"


def test_defaults_mine_positives_with_light_views_and_64_segments(run):
    from multissl.recipes.signature_verification import LIGHT_AUGMENT, parse_args

    a = parse_args(["--data", "x"])
    assert (a.positives, a.positive_neighbours, a.augment, a.segments) == ("dtw", 3, "light", None)
    m = json.loads((run / "out" / "metrics.json").read_text())  # the module's run, with the defaults
    for p in m["pretrain"]:
        assert p["encoder"]["kwargs"] == {"width": 8, "segments": 64}
        assert p["training"]["positives"]["per_record"] == 3
    saved = json.loads((run / "out" / "fold1" / "final" / "config.json").read_text())
    assert {k: saved["adapter_config"][k] for k in LIGHT_AUGMENT} == LIGHT_AUGMENT


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    synthetic_svc2004_folder(tmp_path / "data", users=4, genuine=3, forgeries=1, length=20)
    assert main(["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"), *TINY]) == 2
    assert "user 1 lacks genuine signature(s) U1S5, U1S6 (--genuine 6)" in capsys.readouterr().err
    bad = tmp_path / "data" / "U2S1.TXT"
    bad.write_text("5\n1 2 3 4 5 6 7\n")
    small = ["--genuine", "3", "--enrol-from", "2", "--enrol", "2", "--epochs", "1", "--no-progress"]
    assert main(["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"), *small]) == 2
    assert f"{bad} line 2: header (line 1) says 5 points but the file has 1 point lines" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written before the data is known to be good
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path / "data"), "--folds", "1"])


def _scores(genuine: float, skilled: float, spread: float) -> dict:
    """Normalised scores of one user: genuine around ``genuine``, skilled around ``skilled``."""
    rng = np.random.default_rng(int(1000 * genuine + 10 * skilled))
    g = genuine + spread * rng.standard_normal(15)
    return {"genuine": g, "skilled": skilled + spread * rng.standard_normal(20), "random": g + 5}


def test_cross_fold_weights_come_from_the_other_folds_users():
    # users 1-2: only the SSL score separates forgeries; users 3-4: only DTW does. Each fold
    # must get the weight that is best for the *other* fold, never its own.
    good, bad = (1.0, 3.0, 0.2), (1.0, 1.0, 2.0)  # bad: no separation, and noisy enough to spoil a fusion
    trials = [{"ssl": {1: _scores(*good), 2: _scores(*good), 3: _scores(*bad), 4: _scores(*bad)},
               "dtw": {1: _scores(*bad), 2: _scores(*bad), 3: _scores(*good), 4: _scores(*good)}} for _ in range(2)]
    to_fold_0, to_fold_1 = cross_fold_weights(trials, [[1, 2], [3, 4]])
    assert to_fold_0 <= 0.2 and to_fold_1 >= 0.8  # chosen on users 3-4 (DTW is good) and on users 1-2 (SSL is)
    # a grid of one weight has no choice to make
    assert cross_fold_weights(trials, [[1, 2], [3, 4]], grid=[0.3]) == [0.3, 0.3]


def test_user_folds():
    assert user_folds(list(range(1, 41)), 2) == [list(range(1, 21)), list(range(21, 41))]
    with pytest.raises(Exception, match="cannot make 3 folds"):
        user_folds([1, 2, 3, 4], 3)


def test_listed_and_runnable_as_a_script():
    assert "signature_verification" in available_recipes()
    r = subprocess.run([sys.executable, str(RECIPE), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--enrol-from" in r.stdout


def test_mining_dtw_is_shared_between_processes(tmp_path):
    """Under ``accelerate launch`` with 2 CPU processes (gloo) each process computes half of the
    all-pairs mining DTW, and both end with the single-process matrix."""
    from multissl.recipes.signature_verification import load_corpus, mining_distances

    data = synthetic_svc2004_folder(tmp_path / "data", users=4, genuine=6, forgeries=4, length=30)
    script = Path(__file__).resolve().parents[1] / "signature_mining_ddp_script.py"
    launch_two(script, data, tmp_path / "res", timeout=240)
    alone = mining_distances(load_corpus(str(data), 6, 4), False)
    pairs = 40 * 39 // 2
    shares = [json.loads((tmp_path / f"res.rank{r}.json").read_text()) for r in range(2)]
    assert [s["world"] for s in shares] == [2, 2]
    assert [s["pairs"] for s in shares] == [(pairs + 1) // 2, pairs // 2]
    for r in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"res.rank{r}.npy"), alone, rtol=1e-6)


def test_two_processes_train_one_model_per_fold_and_write_once(tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2`` on a CPU-only machine: the recipe's
    process state is the trainer's (one gloo group of 2, not two lone processes that each think
    they are the main one), so each fold trains on 2 processes and the results are written once."""
    data = synthetic_svc2004_folder(tmp_path / "data", users=4, genuine=6, forgeries=4, length=30, forgery_noise=120.0)
    proc = launch_two(RECIPE, "--data", data, "--output", tmp_path / "out", *TINY)
    assert proc.stdout.count("wrote ") == 1 and proc.stdout.count("signature_verification: ") == 1
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert [p["training"]["num_processes"] for p in m["pretrain"]] == [2, 2]


def test_cohort_scaling_divides_each_ssl_distance_by_the_cohort_scales(run, tmp_path):
    """--cohort-k: the saved SSL distances are the plain run's divided by sqrt(s_a s_b), s from the
    fold's own pretraining signatures (the same encoders: same seed, same pretraining)."""
    from multissl.evaluation.verification import cohort_scales
    from multissl.model import SSLModel
    from multissl.trainer import embed_prepared

    threads = torch.get_num_threads()
    assert main(["--data", str(run / "data"), "--output", str(tmp_path / "out"), "--cohort-k", "3", *TINY]) == 0
    torch.set_num_threads(threads)
    plain, scaled = np.load(run / "out" / "distances.npz"), np.load(tmp_path / "out" / "distances.npz")
    assert np.array_equal(plain["dtw"], scaled["dtw"], equal_nan=True)
    files = sorted((run / "data").iterdir(), key=lambda p: (int(p.stem[1:].split("S")[0]), int(p.stem.split("S")[1])))
    for k, (fold_users, cohort_users) in enumerate((([1, 2], [3, 4]), ([3, 4], [1, 2]))):
        model = SSLModel.from_pretrained(str(tmp_path / "out" / f"fold{k}" / "final"))
        idx = np.nonzero(np.isin(plain["user"], fold_users))[0]
        cohort = np.nonzero(np.isin(plain["user"], cohort_users))[0]
        z = embed_prepared(model.encoder, model.adapter, model.adapter.prepare([files[i] for i in idx])).numpy()
        c = embed_prepared(model.encoder, model.adapter, model.adapter.prepare([files[i] for i in cohort])).numpy()
        s = cohort_scales(z, c, 3)
        block = np.ix_(idx, idx)
        known = ~np.isnan(plain["ssl"][block])
        expected = plain["ssl"][block] / np.sqrt(np.outer(s, s))
        assert known.any()
        assert np.allclose(scaled["ssl"][block][known], expected[known], rtol=1e-4)
        assert not np.allclose(scaled["ssl"][block][known], plain["ssl"][block][known], rtol=1e-2)
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["args"]["cohort_k"] == 3
    assert m["timing"]["ssl_cohort_embed_seconds"] > 0 and m["timing"]["ssl_cohort_search_seconds"] > 0


def test_cohort_k_larger_than_a_cohort_is_a_one_line_error(run, tmp_path, capsys):
    assert main(["--data", str(run / "data"), "--output", str(tmp_path / "out"), "--cohort-k", "21", *TINY]) == 2
    err = capsys.readouterr().err
    assert "--cohort-k 21 is larger than the smallest fold's cohort (20 pretraining signatures)" in err
    assert "Traceback" not in err and not (tmp_path / "out" / "metrics.json").exists()
