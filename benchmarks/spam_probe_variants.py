"""What the frozen probe of the spam_detection recipe sees: pooling variants of one pretraining.

Pretrains the recipe's text encoder once (mae by default, on all 5,574 SMS Spam Collection
texts without labels), or loads a saved model (``--load runs/x/final``), then fits the recipe's
own probe (``_text_classification.tuned_logistic_regression``: standardised features, liblinear
logistic regression, C by stratified CV on the labelled subset) on several feature sets, on the
recipe's splits and labelled subsets (stratified 70/30, seeds 0-4, k labels per class):

- ``mean``: the encoder's output (mean over content tokens; what the recipe's probe uses);
- ``max``, ``meanmax``: max pooling, mean and max concatenated;
- ``layers_meanmax``: mean and max of every block's output, plus the final ones;
- ``emb_meanmax``: mean and max of the token embeddings (no context);
- ``all_meanmax``: all of the above concatenated;
- ``tfidf``: the recipe's TF-IDF baseline (reference).

Prints spam F1 (the recipe's metric) and ROC AUC (threshold-free) per k, writes
``<out>/explore.json`` and ``<out>/feats.npz``. Used for docs/recipes/spam_detection.md
("What the probe sees, and the vocabulary")::

    OMP_NUM_THREADS=1 python benchmarks/spam_probe_variants.py --out /tmp/spam_v2000 --vocab 2000
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from multissl.recipes import _text_classification as tc
from multissl.recipes.spam_detection import DEFAULTS as SPAM_DEFAULTS, resolve_data

VARIANTS = ("tfidf", "mean", "max", "meanmax", "layers_meanmax", "emb_meanmax", "all_meanmax")


@torch.no_grad()
def pooled_features(encoder, adapter, prepared, batch_size: int = 256) -> dict:
    encoder.eval()
    outs: dict = {k: [] for k in ("mean", "max", "layers_mean", "layers_max", "emb_mean", "emb_max")}
    n = len(prepared["ids"])
    for s in range(0, n, batch_size):
        x = adapter.eval_transform({k: v[s:s + batch_size] for k, v in prepared.items()})
        tok, pad = encoder.tokenize(x)
        h, layers = encoder.encode(tok, pad, return_layers=True)
        real = (~pad).unsqueeze(-1).float()

        def mean(t):
            return (t * real).sum(1) / real.sum(1).clamp(min=1)

        def mx(t):
            return t.masked_fill(pad.unsqueeze(-1), -1e4).max(1).values

        outs["mean"].append(mean(h))
        outs["max"].append(mx(h))
        outs["layers_mean"].append(torch.cat([mean(t) for t in layers], 1))
        outs["layers_max"].append(torch.cat([mx(t) for t in layers], 1))
        outs["emb_mean"].append(mean(tok))
        outs["emb_max"].append(mx(tok))
    return {k: torch.cat(v).numpy() for k, v in outs.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/sms_spam_collection")
    p.add_argument("--out", required=True)
    p.add_argument("--load", default=None, help="a saved SSL model folder instead of pretraining")
    p.add_argument("--method", default="mae")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--dim", type=int, default=None)
    p.add_argument("--depth", type=int, default=None)
    p.add_argument("--vocab", type=int, default=None, help="tokenizer vocabulary size (adapter default 8000)")
    p.add_argument("--method-kwargs", default="{}",
                   help="JSON, e.g. '{\"mask_ratio\": 0.3}'; mae's style defaults to the spam recipe's (the MAE "
                        "path, with which the spam page was measured), '{\"style\": \"simmim\"}' for BERT-style")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels-per-class", default="8,32")
    p.add_argument("--variants", default=",".join(VARIANTS))
    a = p.parse_args()
    torch.set_num_threads(1)
    from sklearn.metrics import roc_auc_score

    from multissl.adapters.text import TextAdapter
    from multissl.api import pretrain
    from multissl.model import SSLModel

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=False)
    args = tc.Args(data=resolve_data(a.data), output=str(out), positive_label="spam")
    texts, y, _, pos = tc.load_corpus(args)
    splits = [tc.split(y, 0.3, s) for s in range(5)]
    t0 = time.perf_counter()
    if a.load:
        model = SSLModel.from_pretrained(a.load)
        adapter = model.adapter
    else:
        adapter = TextAdapter(**({"vocab_size": a.vocab} if a.vocab else {}))
        adapter.fit(texts)
        ek = {k: v for k, v in (("dim", a.dim), ("depth", a.depth)) if v is not None}
        mk = json.loads(a.method_kwargs)
        if a.method == "mae":  # the spam recipe's style, not the text adapter's newer default
            mk.setdefault("style", SPAM_DEFAULTS["style"])
        model = pretrain(adapter.encode(texts), adapter=adapter, method=a.method, epochs=a.epochs, batch_size=64,
                         encoder="transformer", encoder_kwargs=ek, method_kwargs=mk,
                         seed=a.seed, progress=False)
        model.save_pretrained(out / "final")
    print(f"pretraining {time.perf_counter() - t0:.0f} s, vocabulary {adapter.tokenizer.vocab_size}, "
          f"max_length {adapter.max_length}", flush=True)
    f = pooled_features(model.encoder, adapter, adapter.encode(texts))
    np.savez_compressed(out / "feats.npz", **f)
    sets = {"mean": f["mean"], "max": f["max"], "meanmax": np.hstack([f["mean"], f["max"]]),
            "layers_meanmax": np.hstack([f["layers_mean"], f["layers_max"], f["mean"], f["max"]]),
            "emb_meanmax": np.hstack([f["emb_mean"], f["emb_max"]]),
            "all_meanmax": np.hstack([f["emb_mean"], f["emb_max"], f["layers_mean"], f["layers_max"],
                                      f["mean"], f["max"]])}
    results = {}
    for name in a.variants.split(","):
        z = tc.tfidf_features(texts).transform(texts) if name == "tfidf" else sets[name]
        r = {}
        for k in [int(v) for v in a.labels_per_class.split(",")]:
            f1s, aucs = [], []
            for s, (train, test) in enumerate(splits):
                lab = tc.labelled_subset(y, train, k, s)
                search = tc.tuned_logistic_regression(z[lab], y[lab], s, pos, scale=name != "tfidf", all_labels=False)
                f1s.append(tc.scores(y[test], search.predict(z[test]), pos)["f1"])
                sign = 1 if pos == 1 else -1
                aucs.append(roc_auc_score(y[test] == pos, sign * search.decision_function(z[test])))
            r[str(k)] = {"f1": float(np.mean(f1s)), "f1_std": float(np.std(f1s)), "auc": float(np.mean(aucs)),
                         "f1_runs": [float(v) for v in f1s]}
        results[name] = r
        print(f"{name:16s} dim {z.shape[1]:6d} " + "  ".join(
            f"k={k}: F1 {v['f1']:.3f}±{v['f1_std']:.3f} AUC {v['auc']:.3f}" for k, v in r.items()), flush=True)
    (out / "explore.json").write_text(json.dumps({"argv": sys.argv, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
