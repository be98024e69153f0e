"""Is the spam_detection probe at 32 labels held back by the spread between pretrainings?

The recipe's frozen probe moves by up to 0.09 spam F1 from one pretraining to another
(docs/recipes/spam_detection.md). This fits the recipe's own probe
(``_text_classification.tuned_logistic_regression``) on the recipe's splits and labelled subsets
for the features of several pretrainings, one at a time and together:

- each model alone (the recipe's ``ssl_probe`` row, reproduced);
- ``concat``: one probe on the models' embeddings side by side;
- ``vote``: each model's own probe, their class probabilities averaged -- the recipe's
  ``--ensemble`` rule (``_text_classification.vote``).

Features: ``feats.npz`` written by ``spam_probe_variants.py --load <model> --variants mean``::

    python benchmarks/spam_probe_variants.py --load runs/spam_seed0/final --out /tmp/f0 --variants mean
    python benchmarks/spam_ensemble.py --feats /tmp/f0/feats.npz /tmp/f1/feats.npz /tmp/f2/feats.npz --json out.json
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from sklearn.metrics import f1_score

from _common import write_json
from multissl.recipes import _text_classification as tc
from multissl.recipes.spam_detection import resolve_data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/sms_spam_collection")
    p.add_argument("--feats", nargs="+", required=True, help="feats.npz of each pretraining")
    p.add_argument("--labels-per-class", default="8,32")
    p.add_argument("--splits", type=int, default=5)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if len(a.feats) < 2:
        p.error("--feats needs at least two models")
    args = tc.Args(data=resolve_data(a.data), output="-", positive_label="spam")
    _, y, classes, pos = tc.load_corpus(args)
    feats = [np.load(f)["mean"] for f in a.feats]
    if any(len(z) != len(y) for z in feats):
        raise SystemExit("--feats: every file must hold one row per message of --data")
    cols = [f"model {i}" for i in range(len(feats))] + ["concat", "vote"]
    results = {}
    print(f"{'spam F1':10s} " + " ".join(f"{c:>10s}" for c in cols))
    for k in [int(v) for v in a.labels_per_class.split(",")]:
        rows = {c: [] for c in cols}
        t0 = time.perf_counter()
        for s in range(a.splits):
            train, test = tc.split(y, 0.3, s)
            lab = tc.labelled_subset(y, train, k, s)
            truth = y[test] == pos
            probs = []
            for i, z in enumerate(feats):
                search = tc.tuned_logistic_regression(z[lab], y[lab], s, pos, scale=True, all_labels=False)
                rows[f"model {i}"].append(float(f1_score(truth, search.predict(z[test]) == pos)))
                probs.append(tc.class_probabilities(search, z[test], len(classes)))
            both = np.concatenate(feats, axis=1)
            search = tc.tuned_logistic_regression(both[lab], y[lab], s, pos, scale=True, all_labels=False)
            rows["concat"].append(float(f1_score(truth, search.predict(both[test]) == pos)))
            rows["vote"].append(float(f1_score(truth, tc.vote(probs) == pos)))
        results[str(k)] = {c: {"mean": float(np.mean(v)), "runs": v} for c, v in rows.items()}
        print(f"k = {k:<6d} " + " ".join(f"{np.mean(rows[c]):10.3f}" for c in cols)
              + f"   ({time.perf_counter() - t0:.0f}s)", flush=True)
    if a.json:
        write_json(a.json, {"argv": sys.argv, "feats": a.feats, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
