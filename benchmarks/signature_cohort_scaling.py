"""Cohort scaling of the SSL distances in the signature_verification recipe, re-scored from finished runs.

The recipe compares two signatures by the Euclidean distance between their embeddings. A
signature that lands in a crowded part of the embedding space is close to *everything*,
forgeries of it included; cohort scaling divides each distance by how crowded the space is
around both signatures (:func:`multissl.evaluation.verification.cohort_scales` and
:func:`~multissl.evaluation.verification.locally_scaled`: ``d(a, b) / sqrt(s_a * s_b)``, ``s`` the
mean distance to the ``k`` nearest cohort members). The cohort of a fold is the fold's own
pretraining signatures -- other writers' genuine signatures and forgeries, without labels -- so
nothing about the evaluated users and no label is used.

For each finished run (its ``distances.npz`` and each fold's encoder in ``fold<k>/final``) this
re-embeds the fold's signatures (checked against the recipe's distances), scales the SSL
distances, and scores SSL alone, DTW alone and the recipe's fusion (``w * ssl + (1 - w) * dtw``
of the per-user normalised ``min`` scores, ``w`` chosen per fold on the other folds' users) with
the recipe's own enrolment draws, for the raw and the scaled SSL distances side by side
(:mod:`signature_fusion`'s scoring). Prints one row per run and ``k`` and writes JSON.

    python benchmarks/signature_cohort_scaling.py --runs runs/sig4_s0:0 runs/sig4_s1:1 --folds 4 \\
        --k 10 50 --json benchmarks/results/signature_cohort_scaling.json

``RUN:SEED``: a run folder and the ``--seed`` it was run with (its enrolment draws).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_json  # noqa: E402
from signature_fusion import draw_parts, rule_rows  # noqa: E402

from multissl.evaluation.verification import cohort_scales, locally_scaled  # noqa: E402
from multissl.recipes.signature_verification import Args, load_corpus, user_folds  # noqa: E402


def fold_embeddings(run: Path, corpus: Any, folds: List[List[int]], saved: Dict[str, np.ndarray]) -> List[Dict]:
    """Per fold: the evaluated and the cohort (pretraining) indices and their embeddings by the
    fold's encoder; raises if the recomputed distances are not the recipe's."""
    from multissl.model import SSLModel
    from multissl.trainer import embed_prepared

    out = []
    for k, fold in enumerate(folds):
        model = SSLModel.from_pretrained(str(run / f"fold{k}" / "final"))
        z = embed_prepared(model.encoder, model.adapter, model.adapter.prepare(list(corpus.files))).double().numpy()
        in_fold = np.isin(corpus.user, fold)
        ev, cohort = np.nonzero(in_fold)[0], np.nonzero(~in_fold)[0]
        recipe = saved["ssl"][np.ix_(ev, ev)]
        known = ~np.isnan(recipe)
        mine = np.linalg.norm(z[ev][:, None] - z[ev][None], axis=-1)
        worst = float(np.abs(recipe[known] - mine[known]).max())
        if worst > 1e-3:
            raise SystemExit(f"{run}/fold{k}: the encoder's distances differ from the run's distances.npz by {worst:.2g}")
        out.append({"eval": ev, "cohort": cohort, "z": z, "known": known, "distances": mine})
    return out


def scaled_ssl(saved: Dict[str, np.ndarray], per_fold: List[Dict], k: int) -> np.ndarray:
    """The run's SSL distance matrix with every known pair divided by the pair's cohort scales."""
    ssl = np.full_like(saved["ssl"], np.nan, dtype=np.float64)
    for f in per_fold:
        s = cohort_scales(f["z"][f["eval"]], f["z"][f["cohort"]], k)
        block = locally_scaled(f["distances"], s, s)
        block[~f["known"]] = np.nan
        ssl[np.ix_(f["eval"], f["eval"])] = block
    return ssl


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="RUN:SEED, a finished run and its --seed")
    p.add_argument("--data", default="../shared/data/svc2004_task2")
    p.add_argument("--folds", type=int, required=True, help="the runs' --folds")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--k", type=int, nargs="+", default=[10, 50], help="cohort neighbours")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    defaults = Args(data=a.data)
    corpus = load_corpus(a.data, defaults.genuine, defaults.enrol_from)
    folds = user_folds(sorted(set(corpus.user.tolist())), a.folds)
    results: List[Dict[str, Any]] = []
    head = f"{'run':<22} {'k':>4} {'SSL':>6} {'scaled':>7} {'DTW':>6} {'fused':>6} {'scaled':>7}  gain vs DTW: fused / scaled"
    print("per-user skilled-forgery EER %, the recipe's fusion with cross-fold weights")
    print(head)
    for spec in a.runs:
        run, _, seed = spec.rpartition(":")
        if not run:
            raise SystemExit(f"--runs: expected RUN:SEED, got {spec!r}")
        t0 = time.perf_counter()
        saved = dict(np.load(Path(run) / "distances.npz"))
        if not np.array_equal(saved["user"], corpus.user) or not np.array_equal(saved["number"], corpus.number):
            raise SystemExit(f"{run}/distances.npz: its files are not those of {a.data}")
        args = Args(data=a.data, folds=a.folds, trials=a.trials, seed=int(seed))
        per_fold = fold_embeddings(Path(run), corpus, folds, saved)
        dtw = saved["dtw"].astype(np.float64)
        raw = rule_rows(draw_parts({"ssl": saved["ssl"].astype(np.float64), "dtw": dtw}, corpus, folds, args),
                        folds, ["linear"])
        for k in a.k:
            scaled = rule_rows(draw_parts({"ssl": scaled_ssl(saved, per_fold, k), "dtw": dtw}, corpus, folds, args),
                               folds, ["linear"])
            e = {name: rows[sys_]["skilled_per_user"] for name, rows, sys_ in
                 (("ssl", raw, "ssl"), ("ssl_scaled", scaled, "ssl"), ("dtw", raw, "dtw"),
                  ("fused", raw, "linear"), ("fused_scaled", scaled, "linear"))}
            results.append({"run": run, "seed": int(seed), "k": k, "skilled_per_user": e,
                            "raw": raw, "scaled": scaled, "seconds": round(time.perf_counter() - t0, 1)})
            print(f"{run:<22} {k:>4} {e['ssl']:>6.2f} {e['ssl_scaled']:>7.2f} {e['dtw']:>6.2f} {e['fused']:>6.2f} "
                  f"{e['fused_scaled']:>7.2f}  {e['fused'] - e['dtw']:+.2f} / {e['fused_scaled'] - e['dtw']:+.2f}",
                  flush=True)
    for k in a.k:
        rows = [r["skilled_per_user"] for r in results if r["k"] == k]
        gain = [r["fused"] - r["dtw"] for r in rows]
        gain_s = [r["fused_scaled"] - r["dtw"] for r in rows]
        print(f"{'mean of ' + str(len(rows)) + ' runs':<22} {k:>4} {np.mean([r['ssl'] for r in rows]):>6.2f} "
              f"{np.mean([r['ssl_scaled'] for r in rows]):>7.2f} {np.mean([r['dtw'] for r in rows]):>6.2f} "
              f"{np.mean([r['fused'] for r in rows]):>6.2f} {np.mean([r['fused_scaled'] for r in rows]):>7.2f}  "
              f"{np.mean(gain):+.2f} / {np.mean(gain_s):+.2f}")
    if a.json:
        write_json(a.json, {"argv": sys.argv, "folds": a.folds, "trials": a.trials, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
