"""Do pretrained text features carry the label? A quick check before a full recipe run.

Pretrains the text adapter's encoder on a random subset of a labelled corpus (without the
labels), then fits the same logistic regression (standardised features, fixed C) on the mean
embeddings of the pretrained encoder and of the same encoder re-initialised, on 75% of the
subset, and scores both on the other 25%. Prints the pretraining loss per epoch, each encoder's
accuracy, the share of variance in the top principal direction and the effective rank
(exp of the entropy of the variance spectrum), and writes them to JSON.

    python benchmarks/text_probe_vs_untrained.py --data ../shared/data/ag_news_test/test.csv \\
        --column-names label,title,description --text-column title,description --records 2000 --epochs 3
    python benchmarks/text_probe_vs_untrained.py ... --pretrain '{"method": "simclr"}'
    python benchmarks/text_probe_vs_untrained.py ... --pretrain '{"adapter_config": {"vocab_size": 2000}}'

``--data`` and the column options are those of the text recipes (``text_categorization``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from multissl import pretrain
from multissl.recipes import _text_classification as tc
from multissl.recipes import text_categorization as cat


def spectrum(z: np.ndarray) -> dict:
    s = np.linalg.svd(z - z.mean(0), compute_uv=False) ** 2
    p = s / s.sum()
    return {"top_direction_share": float(p[0]), "effective_rank": float(np.exp(-(p * np.log(p + 1e-12)).sum()))}


def probe(z: np.ndarray, y: np.ndarray, n_train: int, c: float) -> float:
    scaler = StandardScaler().fit(z[:n_train])
    lr = LogisticRegression(max_iter=3000, C=c).fit(scaler.transform(z[:n_train]), y[:n_train])
    return float(lr.score(scaler.transform(z[n_train:]), y[n_train:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--column-names")
    p.add_argument("--records", type=int, default=2000, help="random subset (seed 0)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--c", type=float, default=0.1, help="inverse regularisation of the probe")
    p.add_argument("--pretrain", default="{}", help="JSON of extra pretrain() arguments (method, adapter_config, ...)")
    p.add_argument("--output", default="benchmarks/results/text_probe_vs_untrained.json")
    a = p.parse_args()
    torch.set_num_threads(1)

    argv = ["--data", a.data, "--text-column", a.text_column, "--label-column", a.label_column, "--output", "-"]
    if a.column_names:
        argv += ["--column-names", a.column_names]
    args = tc.parse_args(tc.build_parser("text_probe", "", cat.DEFAULTS), argv)
    texts, y, _, _ = tc.load_corpus(args)
    idx = np.random.default_rng(0).permutation(len(texts))[:a.records]
    texts, y = [texts[i] for i in idx], y[idx]
    n_train = int(0.75 * len(texts))

    kw = {"adapter": "text", "method": "mae", "epochs": a.epochs, "batch_size": 64, "seed": 0, "progress": False,
          **json.loads(a.pretrain)}
    t0 = time.perf_counter()
    model = pretrain(texts, **kw)
    seconds = time.perf_counter() - t0
    losses = [round(float(h["loss"]), 4) for h in model.config["history"]]
    rows = {"pretrained": model.embed(texts)}
    torch.manual_seed(0)
    for module in model.encoder.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    rows["re-initialised"] = model.embed(texts)
    result = {"data": a.data, "records": len(texts), "train": n_train, "c": a.c, "pretrain": kw,
              "pretrain_seconds": round(seconds, 1), "loss_per_epoch": losses,
              "rows": {name: {"accuracy": probe(z, y, n_train, a.c), **spectrum(z)} for name, z in rows.items()}}
    print(f"pretraining {kw['method']}, {len(texts)} texts, {a.epochs} epochs, {seconds:.0f} s; loss per epoch {losses}")
    print(f"{'encoder':16s} {'accuracy':>9s} {'top dir.':>9s} {'eff. rank':>10s}")
    for name, r in result["rows"].items():
        print(f"{name:16s} {r['accuracy']:9.3f} {r['top_direction_share']:9.3f} {r['effective_rank']:10.1f}")
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(result, indent=1))
    print("wrote", a.output)


if __name__ == "__main__":
    main()
