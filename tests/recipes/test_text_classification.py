"""spam_detection / text_categorization end to end on tiny files in the real formats, and the
user errors (exit status 2, one line, nothing written)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HAM = "ok see you at home later tonight for dinner love going to work meeting tomorrow sorry".split()
SPAM = "free prize call now win cash claim txt reply urgent mobile award guaranteed".split()
TINY = ["--seeds", "1", "--epochs", "1", "--dim", "16", "--depth", "1", "--batch-size", "16",
        "--labels-per-class", "3,all", "--finetune-steps", "2", "--finetune-epochs-all", "0.2", "--no-progress",
        "--threads", "1"]


def _sms_file(path: Path, n_ham: int = 40, n_spam: int = 20) -> Path:
    rng = np.random.default_rng(0)
    lines = [f"ham\t{' '.join(rng.choice(HAM, 6))}" for _ in range(n_ham)]
    lines += [f"spam\t{' '.join(rng.choice(SPAM, 8))} \"{rng.integers(10000, 99999)}\"" for _ in range(n_spam)]
    order = rng.permutation(len(lines))
    path.write_text("\n".join(lines[i] for i in order) + "\n")
    return path


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"multissl.recipes.{module}", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=600)


def test_spam_detection_on_the_sms_format(tmp_path):
    data = _sms_file(tmp_path / "SMSSpamCollection")
    out = tmp_path / "out"
    r = _run("spam_detection", "--data", str(tmp_path), "--output", str(out), *TINY, "--finetune-probe-steps", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["args"]["finetune_probe_steps"] == 2 and m["args"]["vocab_size"] == 2000
    assert m["classes"] == ["ham", "spam"] and m["positive_label"] == "spam"
    assert m["num_records"] == 60 and m["num_test"] == 18
    for row in ("tfidf_lr", "scratch_finetune", "ssl_probe", "ssl_finetune"):
        for k in ("3", "all"):
            res = m["results"][row][k]
            assert set(res) >= {"f1", "accuracy", "mcc"}
            assert 0.0 <= res["accuracy"]["mean"] <= 1.0
    # the classic baseline separates these two vocabularies perfectly with all labels
    assert m["results"]["tfidf_lr"]["all"]["f1"]["mean"] == 1.0
    assert "tfidf_lr_all_labels" in m["targets"]
    assert (out / "f1_vs_labels.png").is_file() and (out / "final" / "config.json").is_file()
    # confusion matrices of each row at the last label count: counts over the whole test split
    cm = m["confusion_matrices"]
    assert cm["labels_per_class"] == "all" and cm["seed"] == 0
    for row in ("tfidf_lr", "scratch_finetune", "ssl_probe", "ssl_finetune"):
        assert np.array(cm[row]).shape == (2, 2) and np.array(cm[row]).sum() == 18
    assert np.trace(np.array(cm["tfidf_lr"])) == 18  # f1 1.0 above: no confusion
    assert (out / "confusion_matrix.png").stat().st_size > 5000
    assert data.is_file()


def test_spam_detection_defaults_and_lpft_option(capsys):
    from multissl.recipes import _text_classification as tc
    from multissl.recipes import spam_detection as sd

    parser = tc.build_parser("spam_detection", "test", sd.DEFAULTS)
    a = tc.parse_args(parser, ["--data", "x"])
    # the recipe's own vocabulary size (the adapter's default is 8,000) and no LP-FT warm-up
    assert a.vocab_size == 2000 and a.finetune_probe_steps == 0
    assert a.style == "mae"  # the MAE path its figures were measured with (the adapter's default is simmim)
    assert tc.parse_args(parser, ["--data", "x", "--finetune-probe-steps", "50"]).finetune_probe_steps == 50
    assert tc.parse_args(parser, ["--data", "x", "--vocab-size", "8000"]).vocab_size == 8000
    with pytest.raises(SystemExit):
        tc.parse_args(parser, ["--data", "x", "--finetune-probe-steps", "-1"])
    # one pretraining unless asked; an ensemble needs at least one member
    assert a.ensemble == 1 and tc.parse_args(parser, ["--data", "x", "--ensemble", "9"]).ensemble == 9
    with pytest.raises(SystemExit) as e:
        tc.parse_args(parser, ["--data", "x", "--ensemble", "0"])
    assert e.value.code == 2 and "--ensemble must be >= 1" in capsys.readouterr().err
    assert tc.parse_args(parser, ["--data", "x", "--style", "simmim"]).style == "simmim"
    with pytest.raises(SystemExit) as e:
        tc.parse_args(parser, ["--data", "x", "--method", "simclr", "--style", "simmim"])
    assert e.value.code == 2 and "--style applies to --method mae" in capsys.readouterr().err
    # text_categorization keeps the adapter's default vocabulary
    from multissl.recipes import text_categorization as cat

    cp = tc.build_parser("t", "t", cat.DEFAULTS)
    c = tc.parse_args(cp, ["--data", "x"])
    assert c.vocab_size is None
    # ... and pretrains BERT-style (simmim) for 20 epochs of 32, unless told otherwise
    assert (c.style, c.epochs, c.batch_size) == ("simmim", 20, 32)
    assert tc.parse_args(cp, ["--data", "x", "--style", "mae"]).style == "mae"
    assert tc.parse_args(cp, ["--data", "x", "--method", "simclr"]).style is None  # the recipe's style is mae's only
    with pytest.raises(SystemExit):
        tc.parse_args(cp, ["--data", "x", "--method", "simclr", "--style", "simmim"])


def test_all_labels_fine_tune_for_epochs_but_never_fewer_steps_than_k_per_class():
    from multissl.recipes import _text_classification as tc
    from multissl.recipes import spam_detection as sd

    a = tc.parse_args(tc.build_parser("spam_detection", "test", sd.DEFAULTS), ["--data", "x"])
    assert (a.finetune_steps, a.finetune_epochs_all, a.finetune_batch_size) == (200, 3.0, 32)
    assert tc.finetune_steps(a, 8, 16) == 200 and tc.finetune_steps(a, 32, 64) == 200
    assert tc.finetune_steps(a, tc.ALL, 3901) == 366      # the SMS corpus' 70%: 3 epochs of batch 32
    assert tc.finetune_steps(a, tc.ALL, 245) == 200       # 3 epochs would be 23 steps


def test_text_categorization_headerless_csv_with_joined_columns(tmp_path):
    rng = np.random.default_rng(1)
    topics = {"1": "match goal team score league player".split(), "2": "market shares profit bank stocks".split(),
              "3": "space rocket launch orbit nasa probe".split()}
    rows = []
    for i in range(45):
        label = str(i % 3 + 1)
        title = " ".join(rng.choice(topics[label], 3))
        rows.append(f'"{label}","{title}","{" ".join(rng.choice(topics[label], 7))} ""quoted"""')
    (tmp_path / "news.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    r = _run("text_categorization", "--data", str(tmp_path / "news.csv"), "--column-names", "label,title,description",
             "--text-column", "title,description", "--output", str(out), "--rows", "tfidf_lr,ssl_probe",
             "--style", "simmim", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["classes"] == ["1", "2", "3"] and set(m["results"]) == {"tfidf_lr", "ssl_probe"}
    # the BERT-style mae was pretrained
    assert json.loads((out / "final" / "config.json").read_text())["method_hparams"]["style"] == "simmim"
    assert "macro_f1" in m["results"]["ssl_probe"]["3"]
    assert (out / "accuracy_vs_labels.png").is_file()


@pytest.mark.parametrize("content,extra,message", [
    (b"text,category\nhello,a\n", ["--text-column", "text"], "no column 'label'"),
    (b"ham\tfine\nspam\tcaf\xe9 prize\n", [], "line 2: not valid UTF-8"),
    (b"ham\tfine\nspam\t   \n", [], "line 2: empty text"),
])
def test_user_errors_exit_2_with_one_line_and_write_nothing(tmp_path, content, extra, message):
    data = tmp_path / ("m.csv" if content.startswith(b"text,") else "SMSSpamCollection")
    data.write_bytes(content)
    out = tmp_path / "out"
    r = _run("spam_detection", "--data", str(data), "--output", str(out), *extra, *TINY)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if "Warning" not in ln and ln.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr
    assert not out.exists()


def test_vote_averages_probabilities_not_decisions():
    from multissl.recipes import _text_classification as tc

    a = np.array([[0.6, 0.4], [0.2, 0.8]])
    b = np.array([[0.3, 0.7], [0.4, 0.6]])
    # means [[0.45, 0.55], [0.3, 0.7]]
    assert tc.vote([a, b]).tolist() == [1, 1]
    # two of three members lean ham (0.55) but the third is sure of spam: the mean (0.63) says spam
    lean, sure = np.array([[0.55, 0.45]]), np.array([[0.01, 0.99]])
    assert tc.vote([lean, lean, sure]).tolist() == [1]
    assert tc.vote([lean]).tolist() == [0]  # one member: its own most probable class
    assert tc.vote([np.array([[0.5, 0.5]])]).tolist() == [0]  # a tie goes to the lowest class index
    with pytest.raises(ValueError, match="at least one"):
        tc.vote([])


def test_class_probabilities_place_the_classifier_columns():
    from sklearn.linear_model import LogisticRegression

    from multissl.recipes import _text_classification as tc

    x = np.array([[0.0], [0.1], [5.0], [5.1]])
    clf = LogisticRegression().fit(x, np.array([0, 0, 2, 2]))  # class 1 absent from these labels
    p = tc.class_probabilities(clf, x, 3)
    assert p.shape == (4, 3) and np.all(p[:, 1] == 0)
    np.testing.assert_allclose(p[:, [0, 2]], clf.predict_proba(x))
    assert p.argmax(1).tolist() == [0, 0, 2, 2]


def test_ensemble_is_the_vote_of_the_single_seed_pretrainings(tmp_path):
    """--ensemble 2: members are the --seed 0 and --seed 1 pretrainings, and the probe row is the
    mean probability of each member's own probe (recomputed here from the saved models)."""
    import torch
    from safetensors.torch import load_file

    from multissl.model import SSLModel
    from multissl.recipes import _text_classification as tc
    from multissl.trainer import embed_prepared

    _sms_file(tmp_path / "SMSSpamCollection")
    ens, single = tmp_path / "ens", tmp_path / "single"
    # members 3 and 4 of an earlier, larger ensemble in the same folder are removed; a user's
    # folder that is not a saved model is left alone
    for stale in ("final_3", "final_4"):
        (ens / stale).mkdir(parents=True)
        (ens / stale / "config.json").write_text("{}")
    (ens / "final_9_notes").mkdir()
    r = _run("spam_detection", "--data", str(tmp_path), "--output", str(ens), *TINY, "--ensemble", "2",
             "--rows", "tfidf_lr,scratch_finetune,ssl_probe")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ensemble member 2/2, seed 1" in r.stdout
    r = _run("spam_detection", "--data", str(tmp_path), "--output", str(single), *TINY, "--seed", "1",
             "--rows", "ssl_probe")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((ens / "metrics.json").read_text())
    assert m["ensemble"]["size"] == 2 and m["ensemble"]["pretraining_seeds"] == [0, 1]
    assert len(m["pretrain_seconds"]) == 2 and len(m["pretrain_history"]) == 2
    assert not (ens / "final_3").exists() and not (ens / "final_4").exists() and (ens / "final_9_notes").is_dir()
    # member 2 is exactly the --seed 1 pretraining; member 1 differs from it
    w1, w2 = (load_file(str(ens / d / "model.safetensors")) for d in ("final", "final_2"))
    ws = load_file(str(single / "final" / "model.safetensors"))
    assert all(torch.equal(w2[k], ws[k]) for k in ws)
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)
    # the probe row, recomputed: each member's tuned LR, probabilities averaged
    args = tc.parse_args(tc.build_parser("spam_detection", "t", {"positive_label": "spam"}),
                         ["--data", str(tmp_path / "SMSSpamCollection"), "--output", "-"])
    texts, y, _, pos = tc.load_corpus(args)
    zs = []
    for d in ("final", "final_2"):
        model = SSLModel.from_pretrained(ens / d)
        zs.append(embed_prepared(model.encoder, model.adapter, model.adapter.encode(texts)).numpy())
    train, test = tc.split(y, 0.3, 0)
    for k, kn in ((3, "3"), (tc.ALL, "all")):
        lab = tc.labelled_subset(y, train, k, 0)
        probs = [tc.class_probabilities(tc.tuned_logistic_regression(z[lab], y[lab], 0, pos, scale=True,
                                                                     all_labels=k == tc.ALL), z[test], 2)
                 for z in zs]
        want = tc.scores(y[test], tc.vote(probs), pos)
        got = {metric: v["runs"][0] for metric, v in m["results"]["ssl_probe"][kn].items()}
        assert got == pytest.approx(want)
    cm = np.array(m["confusion_matrices"]["ssl_probe"])
    assert cm.sum() == len(test)
    assert [c["member"] for c in m["chosen_hyperparameters"]["ssl_probe"]] == [0, 1, 0, 1]
    assert set(m["results"]) == {"tfidf_lr", "scratch_finetune", "ssl_probe"}
