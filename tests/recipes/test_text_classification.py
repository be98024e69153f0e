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


def test_spam_detection_defaults_and_lpft_option():
    from multissl.recipes import _text_classification as tc
    from multissl.recipes import spam_detection as sd

    parser = tc.build_parser("spam_detection", "test", sd.DEFAULTS)
    a = tc.parse_args(parser, ["--data", "x"])
    # the recipe's own vocabulary size (the adapter's default is 8,000) and no LP-FT warm-up
    assert a.vocab_size == 2000 and a.finetune_probe_steps == 0
    assert tc.parse_args(parser, ["--data", "x", "--finetune-probe-steps", "50"]).finetune_probe_steps == 50
    assert tc.parse_args(parser, ["--data", "x", "--vocab-size", "8000"]).vocab_size == 8000
    with pytest.raises(SystemExit):
        tc.parse_args(parser, ["--data", "x", "--finetune-probe-steps", "-1"])
    # text_categorization keeps the adapter's default vocabulary
    from multissl.recipes import text_categorization as cat

    assert tc.parse_args(tc.build_parser("t", "t", cat.DEFAULTS), ["--data", "x"]).vocab_size is None


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
             "--text-column", "title,description", "--output", str(out), "--rows", "tfidf_lr,ssl_probe", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["classes"] == ["1", "2", "3"] and set(m["results"]) == {"tfidf_lr", "ssl_probe"}
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
