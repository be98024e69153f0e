"""Do the unlabelled training messages help the few-label spam classifiers beyond pretraining?

The spam_detection recipe's few-label classifiers see k + k labelled messages (a 50 % prior)
and are tested on 13 % spam; the SSL probe ranks well but over-flags (docs/recipes/
spam_detection.md). The split's *unlabelled* training messages (about 3,900) are there in
every few-label setting, and two classic semi-supervised uses of them are measured here, on
the recipe's splits and labelled subsets, for the TF-IDF baseline and the SSL features alike
(the same procedure on both sides, so the comparison stays fair):

- ``spread``: label spreading on a k-nearest-neighbour graph of the labelled and unlabelled
  training messages (cosine distance; Zhou et al., NIPS 2003, ``sklearn.semi_supervised.
  LabelSpreading``), then the recipe's probe (``tuned_logistic_regression``) refit on all
  training messages with their spread labels, and scored on the test split;
- ``self_train``: pseudo-labelling (self-training): the probe labels the unlabelled messages,
  is refit on the labelled ones plus its own predictions, for ``--rounds`` rounds.

::

    python benchmarks/spam_probe_variants.py --load runs/spam/final --out /tmp/spamfeats --variants mean
    python benchmarks/spam_semi_supervised.py --feats /tmp/spamfeats/feats.npz --json out.json
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.metrics import f1_score

from _common import write_json
from multissl.recipes import _text_classification as tc
from multissl.recipes.spam_detection import resolve_data


def knn_graph_spread(z: np.ndarray, lab_mask: np.ndarray, y_lab: np.ndarray, neighbours: int,
                     alpha: float) -> np.ndarray:
    """Spread labels over a cosine kNN graph; returns a label per row of ``z``."""
    from sklearn.preprocessing import normalize
    from sklearn.semi_supervised import LabelSpreading

    zn = normalize(z)  # cosine kNN = Euclidean kNN on unit vectors
    target = np.full(len(z), -1)
    target[lab_mask] = y_lab
    model = LabelSpreading(kernel="knn", n_neighbors=neighbours, alpha=alpha, max_iter=200)
    model.fit(zn, target)
    return model.transduction_


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/sms_spam_collection")
    p.add_argument("--feats", required=True, help="feats.npz written by spam_probe_variants.py")
    p.add_argument("--labels-per-class", default="8,32")
    p.add_argument("--neighbours", default="10")
    p.add_argument("--alpha", type=float, default=0.2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--splits", type=int, default=5)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    args = tc.Args(data=resolve_data(a.data), output="-", positive_label="spam")
    texts, y, _, pos = tc.load_corpus(args)
    tfidf = tc.tfidf_features(texts).transform(texts)
    sets = {"tfidf": tfidf, "ssl_mean": np.load(a.feats)["mean"]}
    # the graph of the TF-IDF side is built on a 256-d LSA of it (kNN on the sparse matrix is the
    # same idea but slow); the probe itself still sees the full TF-IDF vectors
    graph_feats = {"tfidf": TruncatedSVD(256, random_state=0).fit_transform(tfidf), "ssl_mean": sets["ssl_mean"]}
    neighbours = [int(v) for v in a.neighbours.split(",")]
    results = {}
    cols = ["fitted"] + [f"spread_k{n}" for n in neighbours] + ["self_train"]
    print(f"{'spam F1':10s} {'k':>3s} " + " ".join(f"{c:>12s}" for c in cols))
    for k in [int(v) for v in a.labels_per_class.split(",")]:
        for name, z in sets.items():
            rows = {c: [] for c in cols}
            t0 = time.perf_counter()
            for s in range(a.splits):
                train, test = tc.split(y, 0.3, s)
                lab = tc.labelled_subset(y, train, k, s)
                scale = name != "tfidf"

                def probe(idx: np.ndarray, labels: np.ndarray) -> float:
                    search = tc.tuned_logistic_regression(z[idx], labels, s, pos, scale=scale, all_labels=False)
                    return float(f1_score(y[test] == pos, search.predict(z[test]) == pos)), search

                f1, search = probe(lab, y[lab])
                rows["fitted"].append(f1)
                lab_mask = np.isin(train, lab)
                for n in neighbours:
                    spread = knn_graph_spread(graph_feats[name][train], lab_mask, y[train][lab_mask], n, a.alpha)
                    rows[f"spread_k{n}"].append(probe(train, spread)[0])
                unl = np.setdiff1d(train, lab)
                for _ in range(a.rounds):
                    pseudo = search.predict(z[unl])
                    idx = np.concatenate([lab, unl])
                    f1, search = probe(idx, np.concatenate([y[lab], pseudo]))
                rows["self_train"].append(f1)
            results[f"{name}@{k}"] = {c: {"mean": float(np.mean(v)), "runs": v} for c, v in rows.items()}
            print(f"{name:10s} {k:3d} " + " ".join(f"{np.mean(rows[c]):12.3f}" for c in cols)
                  + f"   ({time.perf_counter() - t0:.0f}s)", flush=True)
    if a.json:
        write_json(a.json, {"argv": sys.argv, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
