"""Affine-hull enrolment for the signature_verification recipe, re-scored from a finished run.

The recipe scores a questioned signature by its SSL distance to the *nearest* of the writer's 5
references (divided by the references' mean distance to one another). A genuine signature
differs from the references in the ways they differ from one another, so this script scores it
instead by its distance to the references' affine hull, ridge-regularised towards their centroid
(:func:`multissl.evaluation.verification.hull_distances`; ``ridge`` 0 is the plain hull, a large
ridge the centroid), divided by the same spread. It reads the run's ``distances.npz`` (Euclidean
SSL distances between embeddings, DTW distances), repeats the recipe's enrolment draws (same
seeds, same order) and chooses every free parameter the recipe's way, for each fold on the
*other* folds' users (lowest per-user skilled EER): the ridge for the SSL score alone, the ridge
and the fusion weight together for ``w * ssl + (1 - w) * dtw``.

    python benchmarks/signature_hull_enrolment.py --run runs/sig4_s0 --folds 4 --seed 0 \\
        --json benchmarks/results/signature_hull_enrolment_seed0.json

Prints one table (per-user skilled and random-forgery EER %, the difference to DTW, the choices).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from signature_fusion import draw_parts, load_run, run_parser  # noqa: E402  (the recipe's draws, score parts)

from multissl.evaluation.verification import eer, hull_distances, reference_spread  # noqa: E402
from multissl.recipes.signature_verification import FUSION_GRID, KINDS, Args, enrolment_draw  # noqa: E402

RIDGES = (1.0, 0.3, 0.1, 0.03, 0.01)
Choice = Tuple[str, float]              # (SSL score part, fusion weight w; 1 = SSL alone, 0 = DTW alone)


def add_hull_parts(trials: List[Dict], ssl: np.ndarray, corpus, folds: List[List[int]], args: Args) -> None:
    """Add ``hull<ridge>`` SSL score parts to every user's parts, with the same draws as ``draw_parts``."""
    for t, per_user in enumerate(trials):
        rng = np.random.default_rng([args.seed, t])
        for fold in folds:
            for u in fold:
                refs, queries = enrolment_draw(corpus, u, fold, rng, args)
                rr = ssl[np.ix_(refs, refs)]
                spread = max(reference_spread(rr), 1e-12)
                for ridge in RIDGES:
                    per_user[u][f"hull{ridge:g}"] = {k: hull_distances(ssl[np.ix_(q, refs)], rr, ridge) / spread
                                                     for k, q in queries.items()}


def fused(parts: Dict, choice: Choice) -> Dict[str, np.ndarray]:
    part, w = choice
    return {k: w * parts[part][k] + (1 - w) * parts["dtw_min"][k] for k in parts["dtw_min"]}


def evaluate(trials: List[Dict], choices: Dict[int, Choice]) -> Dict[str, float]:
    """Per-user EER (%) for each forgery kind, user ``u`` scored by ``choices[u]``, mean over trials."""
    return {kind: float(100 * np.mean([np.mean([eer(*(fused(t[u], c)[k] for k in ("genuine", kind)))
                                                 for u, c in choices.items()]) for t in trials]))
            for kind in KINDS}


def cross_fold(trials: List[Dict], folds: List[List[int]], keys: List[Choice]) -> Tuple[Dict[int, Choice], List]:
    """For each fold, the key with the lowest mean per-user skilled EER on the other folds' users."""
    users = [u for f in folds for u in f]
    err = {key: {u: np.mean([eer(fused(t[u], key)["genuine"], fused(t[u], key)["skilled"]) for t in trials])
                 for u in users} for key in keys}
    choices, picked = {}, []
    for fold in folds:
        others = [u for f in folds if f is not fold for u in f]
        key = min(keys, key=lambda k: (np.mean([err[k][u] for u in others]), keys.index(k)))
        picked.append([key[0], float(key[1])])
        choices.update({u: key for u in fold})
    return choices, picked


def main() -> int:
    a = run_parser(__doc__.splitlines()[0]).parse_args()
    args, corpus, dist, folds = load_run(a)
    trials = draw_parts(dist, corpus, folds, args)
    add_hull_parts(trials, dist["ssl"], corpus, folds, args)
    users = [u for f in folds for u in f]
    hulls = [f"hull{r:g}" for r in RIDGES]

    rows: Dict[str, Dict] = {}
    rows["SSL, nearest reference (the recipe)"] = {**evaluate(trials, {u: ("ssl_min", 1.0) for u in users}), "choices": None}
    for h in hulls:
        rows[f"SSL, {h} (fixed)"] = {**evaluate(trials, {u: (h, 1.0) for u in users}), "choices": None}
    c, picked = cross_fold(trials, folds, [(h, 1.0) for h in hulls])
    rows["SSL, hull, ridge cross-fold"] = {**evaluate(trials, c), "choices": picked}
    rows["DTW"] = {**evaluate(trials, {u: ("ssl_min", 0.0) for u in users}), "choices": None}
    c, picked = cross_fold(trials, folds, [("ssl_min", float(w)) for w in FUSION_GRID])
    rows["fusion, nearest reference (the recipe)"] = {**evaluate(trials, c), "choices": picked}
    c, picked = cross_fold(trials, folds, [(h, float(w)) for h in hulls for w in FUSION_GRID])
    rows["fusion, hull, ridge and w cross-fold"] = {**evaluate(trials, c), "choices": picked}

    dtw = rows["DTW"]["skilled"]
    print(f"{a.run}: {a.folds} folds, {a.trials} trials, seed {a.seed}; per-user EER %")
    print(f"{'system':<40} {'skilled':>8} {'vs DTW':>7} {'random':>7}  cross-fold choices (part, w)")
    for name, r in rows.items():
        choice = "; ".join(f"{part} {w:g}" for part, w in r["choices"] or [])
        print(f"{name:<40} {r['skilled']:>8.2f} {r['skilled'] - dtw:>+7.2f} {r['random']:>7.2f}  {choice}")
    if a.json:
        Path(a.json).write_text(json.dumps({"run": a.run, "folds": a.folds, "trials": a.trials, "seed": a.seed,
                                            "ridges": list(RIDGES), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
