"""Does correcting the class prior fix the few-label spam probes' precision?

The spam_detection recipe trains its few-label classifiers on k + k messages (a 50 % prior)
and tests them on 13 % spam, and the SSL probe loses F1 to over-flagging (see
docs/recipes/spam_detection.md). The textbook fix for such a prior shift is to re-weight the
posteriors by the new prior over the old one, the new prior estimated without labels by EM on
the unlabelled messages (M. Saerens, P. Latinne, C. Decaestecker, "Adjusting the outputs of a
classifier to new a priori probabilities: a simple procedure", Neural Computation 2002). This
script refits the recipe's own probe (``tuned_logistic_regression``) on the recipe's splits and
labelled subsets, for the TF-IDF baseline and the SSL features that ``spam_probe_variants.py``
saved, and prints spam F1 as fitted, after the EM correction (prior estimated on the split's
*unlabelled training* messages) and with the true training prior (an upper bound)::

    python benchmarks/spam_probe_variants.py --load runs/spam/final --out /tmp/spamfeats --variants mean
    python benchmarks/spam_prior_shift.py --feats /tmp/spamfeats/feats.npz --json out.json
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from sklearn.metrics import f1_score

from _common import write_json
from multissl.recipes import _text_classification as tc
from multissl.recipes.spam_detection import resolve_data


def em_prior(proba: np.ndarray, train_prior: np.ndarray, iters: int = 1000, tol: float = 1e-8) -> np.ndarray:
    """Saerens et al.'s EM: the class prior of the data behind ``proba`` (N, C)."""
    prior = train_prior.copy()
    for _ in range(iters):
        new = reweight(proba, train_prior, prior).mean(0)
        done = np.abs(new - prior).max() < tol
        prior = new
        if done:
            break
    return prior


def reweight(proba: np.ndarray, train_prior: np.ndarray, prior: np.ndarray) -> np.ndarray:
    q = proba * (prior / train_prior)
    return q / q.sum(1, keepdims=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/sms_spam_collection")
    p.add_argument("--feats", required=True, help="feats.npz written by spam_probe_variants.py")
    p.add_argument("--labels-per-class", default="8,32")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    args = tc.Args(data=resolve_data(a.data), output="-", positive_label="spam")
    texts, y, _, pos = tc.load_corpus(args)
    sets = {"tfidf": tc.tfidf_features(texts).transform(texts), "ssl_mean": np.load(a.feats)["mean"]}
    results = {}
    print(f"{'spam F1, 5 splits':24s} {'k':>3s} {'as fitted':>10s} {'EM prior':>10s} {'true prior':>11s} {'EM estimate':>12s}")
    for k in [int(v) for v in a.labels_per_class.split(",")]:
        for name, z in sets.items():
            rows = {"fitted": [], "em": [], "true_prior": [], "em_spam_prior": []}
            for s in range(5):
                train, test = tc.split(y, 0.3, s)
                lab = tc.labelled_subset(y, train, k, s)
                search = tc.tuned_logistic_regression(z[lab], y[lab], s, pos, scale=name != "tfidf", all_labels=False)
                classes = list(search.classes_)
                train_prior = np.bincount(y[lab], minlength=len(classes))[classes] / len(lab)
                prior = em_prior(search.predict_proba(z[np.setdiff1d(train, lab)]), train_prior)
                true = np.bincount(y[train], minlength=len(classes))[classes] / len(train)
                proba = search.predict_proba(z[test])

                def f1(q: np.ndarray) -> float:
                    return float(f1_score(y[test] == pos, np.asarray(classes)[q.argmax(1)] == pos))

                rows["fitted"].append(f1(proba))
                rows["em"].append(f1(reweight(proba, train_prior, prior)))
                rows["true_prior"].append(f1(reweight(proba, train_prior, true)))
                rows["em_spam_prior"].append(float(prior[classes.index(pos)]))
            results[f"{name}@{k}"] = {key: {"mean": float(np.mean(v)), "runs": v} for key, v in rows.items()}
            m = {key: float(np.mean(v)) for key, v in rows.items()}
            print(f"{name:24s} {k:3d} {m['fitted']:10.3f} {m['em']:10.3f} {m['true_prior']:11.3f} {m['em_spam_prior']:12.3f}")
    if a.json:
        write_json(a.json, {"argv": sys.argv, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
