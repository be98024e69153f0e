"""Score-fusion rules for the signature_verification recipe, re-scored from a finished run.

The recipe fuses the SSL and DTW scores as ``w * ssl + (1 - w) * dtw`` of the two per-user
normalised ``min`` scores (distance to the nearest reference / mean reference-to-reference
distance), ``w`` chosen across folds. This script reads a finished run's ``distances.npz``,
repeats the recipe's own enrolment draws (same seeds, same order) and compares other rules on
exactly the same scores, each with its weight chosen the recipe's way (lowest per-user skilled
EER on the *other* folds' users):

- ``linear``: the recipe's rule (its figures are reproduced: a check on the re-scoring);
- ``log``: ``w * log(ssl) + (1 - w) * log(dtw)``, i.e. a weighted geometric mean of the two
  ratios (a distance ratio is a multiplicative quantity; both are 1 at the references' spread);
- ``znorm``: each system's score centred and scaled by the user's *enrolment* scores (each
  reference scored against the other four: what a genuine score looks like for this user, known
  at enrolment without any impostor), then ``linear``;
- ``ssl_mean``: the SSL score with the ``mean`` reduction, DTW with ``min``, then ``linear``;
- ``chosen``: for each fold, the rule *and* weight with the lowest error on the other folds.

    python benchmarks/signature_fusion.py --run runs/sig4 --folds 4 --json benchmarks/results/signature_fusion.json

``--control duration`` puts a hand-made distance in the SSL score's place, ``|log(T_a / T_b)|`` of
the two signatures' durations (last timestamp minus first), scored and fused the same way: how
much of the fusion's gain one global cue that DTW's per-signature z-scoring discards would give.

Prints one table (per-user and pooled skilled EER, random-forgery EER, chosen weights per fold).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np

from multissl.evaluation.verification import eer, enrolment_scores, normalized_scores
from multissl.recipes.signature_verification import (FUSION_GRID, KINDS, Args, enrolment_draw, load_corpus,
                                                      user_folds)

Scores = Dict[str, np.ndarray]          # kind -> scores of one user in one trial
Parts = Dict[str, Scores]               # part name ("ssl_min", "dtw_min", ...) -> Scores


def user_parts(dist: Dict[str, np.ndarray], refs: List[int], queries: Dict[str, List[int]]) -> Parts:
    """Every score part a rule may use, for one user and one draw of references."""
    parts: Parts = {}
    for system, d in dist.items():
        rr = d[np.ix_(refs, refs)]
        for reduction in ("min", "mean"):
            parts[f"{system}_{reduction}"] = {k: normalized_scores(d[np.ix_(q, refs)], rr, reduction)
                                              for k, q in queries.items()}
        enrol = enrolment_scores(rr, "min")
        mu, sd = enrol.mean(), max(enrol.std(), 1e-6)
        parts[f"{system}_z"] = {k: (s - mu) / sd for k, s in parts[f"{system}_min"].items()}
    return parts


def draw_parts(dist: Dict[str, np.ndarray], corpus, folds: List[List[int]], args: Args) -> List[Dict[int, Parts]]:
    """Per trial and user, the score parts, with the recipe's draws (same seeds, same order)."""
    trials = []
    for t in range(args.trials):
        rng = np.random.default_rng([args.seed, t])
        per_user: Dict[int, Parts] = {}
        for fold in folds:
            for u in fold:
                per_user[u] = user_parts(dist, *enrolment_draw(corpus, u, fold, rng, args))
        trials.append(per_user)
    return trials


def _linear(a: str, b: str) -> Callable[[Parts, float], Scores]:
    return lambda p, w: {k: w * p[a][k] + (1 - w) * p[b][k] for k in p[a]}


def _log(p: Parts, w: float) -> Scores:
    return {k: w * np.log(np.maximum(p["ssl_min"][k], 1e-9)) + (1 - w) * np.log(np.maximum(p["dtw_min"][k], 1e-9))
            for k in p["ssl_min"]}


RULES: Dict[str, Callable[[Parts, float], Scores]] = {
    "linear": _linear("ssl_min", "dtw_min"),
    "log": _log,
    "znorm": _linear("ssl_z", "dtw_z"),
    "ssl_mean": _linear("ssl_mean", "dtw_min"),
}


def user_errors(trials: List[Dict[int, Parts]], rule: str, w: float) -> Dict[int, float]:
    """Each user's skilled-forgery EER of a rule at weight ``w``, averaged over trials."""
    return {u: float(np.mean([eer(*(RULES[rule](t[u], w)[k] for k in ("genuine", "skilled"))) for t in trials]))
            for u in trials[0]}


def evaluate(trials: List[Dict[int, Parts]], rule_w: Dict[int, Tuple[str, float]]) -> Dict[str, float]:
    """Per-user and pooled EER (%) for each forgery kind, with user ``u`` scored by ``rule_w[u]``."""
    out = {}
    for kind in KINDS:
        per_user, pooled = [], []
        for t in trials:
            fused = {u: RULES[r](t[u], w) for u, (r, w) in rule_w.items()}
            per_user.append(np.mean([eer(f["genuine"], f[kind]) for f in fused.values()]))
            pooled.append(eer(np.concatenate([f["genuine"] for f in fused.values()]),
                              np.concatenate([f[kind] for f in fused.values()])))
        out[f"{kind}_per_user"] = float(100 * np.mean(per_user))
        out[f"{kind}_pooled"] = float(100 * np.mean(pooled))
    return out


def rule_rows(trials: List[Dict[int, Parts]], folds: List[List[int]], names: List[str]) -> Dict[str, Dict]:
    """EERs of SSL alone, DTW alone, and each rule in ``names`` (plus ``chosen``: rule and
    weight chosen together) with its weight chosen for each fold on the *other* folds' users."""
    err = {(r, w): user_errors(trials, r, w) for r in names for w in FUSION_GRID}
    rows: Dict[str, Dict] = {}
    singles = {"ssl": ("linear", 1.0), "dtw": ("linear", 0.0)}
    for name, rw in singles.items():
        rows[name] = {**evaluate(trials, {u: rw for f in folds for u in f}), "weights": None}
    for name in list(names) + (["chosen"] if len(names) > 1 else []):
        choice = []
        for fold in folds:
            others = [u for f in folds if f is not fold for u in f]
            keys = [(r, w) for r in (names if name == "chosen" else [name]) for w in FUSION_GRID]
            r, w = min(keys, key=lambda key: (np.mean([err[key][u] for u in others]), keys.index(key)))
            choice.append((r, float(w)))
        rows[name] = {**evaluate(trials, {u: c for f, c in zip(folds, choice) for u in f}),
                      "weights": [[r, w] for r, w in choice]}
        if len({r for r, _ in choice}) > 1:  # one threshold over scores of different rules means nothing
            rows[name]["skilled_pooled"] = rows[name]["random_pooled"] = None
    return rows


def duration_distances(files: List[Path]) -> np.ndarray:
    """(N, N) ``|log(T_a / T_b)|`` of the signatures' durations (SVC2004 timestamps, ms)."""
    from multissl.adapters.signature_io import read_svc2004

    log_t = np.log([float(np.ptp(read_svc2004(f)[:, 2])) for f in files])
    return np.abs(log_t[:, None] - log_t[None, :])


def run_parser(description: str) -> argparse.ArgumentParser:
    """The options naming a finished recipe run and its protocol (shared with the other re-scoring scripts)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--run", required=True, help="a finished signature_verification run (its distances.npz)")
    p.add_argument("--data", default="../shared/data/svc2004_task2")
    p.add_argument("--folds", type=int, required=True, help="the run's --folds")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="the run's --seed (its enrolment draws)")
    p.add_argument("--json", default=None)
    return p


def load_run(a: argparse.Namespace):
    """``(args, corpus, {"ssl", "dtw"} distances, folds)`` of a finished run, checked against the data."""
    args = Args(data=a.data, folds=a.folds, trials=a.trials, seed=a.seed)
    corpus = load_corpus(a.data, args.genuine, args.enrol_from)
    saved = np.load(Path(a.run) / "distances.npz")
    if not np.array_equal(saved["user"], corpus.user) or not np.array_equal(saved["number"], corpus.number):
        raise SystemExit(f"{a.run}/distances.npz: its files are not those of {a.data}")
    dist = {s: saved[s].astype(np.float64) for s in ("ssl", "dtw")}
    return args, corpus, dist, user_folds(sorted(set(corpus.user.tolist())), a.folds)


def main() -> int:
    p = run_parser(__doc__.splitlines()[0])
    p.add_argument("--control", choices=["duration"], default=None,
                   help="fuse DTW with this hand-made distance instead of the run's SSL one")
    a = p.parse_args()
    args, corpus, dist, folds = load_run(a)
    if a.control == "duration":  # rows named "ssl" below are then this control
        dist["ssl"] = duration_distances(corpus.files)
    trials = draw_parts(dist, corpus, folds, args)

    rows = rule_rows(trials, folds, list(RULES))
    dtw = rows["dtw"]["skilled_per_user"]
    print(f"{a.run}: {a.folds} folds, {a.trials} trials, seed {a.seed}; EER %"
          + ("; 'ssl' is the duration control" if a.control else ""))
    print(f"{'system':<10} {'skilled/user':>13} {'vs DTW':>7} {'skilled pooled':>15} {'random/user':>12}  cross-fold choice")
    for name, r in rows.items():
        pooled = "-" if r["skilled_pooled"] is None else f"{r['skilled_pooled']:.2f}"
        choice = ", ".join(f"{rule} {w:g}" if name == "chosen" else f"{w:g}" for rule, w in r["weights"] or [])
        print(f"{name:<10} {r['skilled_per_user']:>13.2f} {r['skilled_per_user'] - dtw:>+7.2f} "
              f"{pooled:>15} {r['random_per_user']:>12.2f}  {choice}")
    if a.json:
        Path(a.json).write_text(json.dumps({"run": a.run, "folds": a.folds, "trials": a.trials, "seed": a.seed,
                                            "control": a.control, "rules": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
