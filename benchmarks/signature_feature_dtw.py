"""DTW on the SSL encoder's per-point features, alone and fused with the classic DTW.

Re-scores a finished ``signature_verification`` run (its ``distances.npz`` and each fold's
encoder in ``fold<k>/final``) with one more system: the encoder's per-point features
(``forward_tokens``, before pooling) of two signatures compared by DTW, instead of the Euclidean
distance between their pooled embeddings. Same pairs, enrolment draws, per-user normalisation,
EERs and cross-fold fusion weights as the recipe (its own functions). Prints a table and writes
JSON.

    python recipes/signature_verification.py --data ../shared/data/svc2004_task2 --output runs/sig4 --folds 4
    python benchmarks/signature_feature_dtw.py --run runs/sig4 --data ../shared/data/svc2004_task2 --folds 4 \\
        --json benchmarks/results/signature_feature_dtw_4folds.json

``--sampling native`` (default) runs the encoder on the tablet's own sampling, ``--sampling
resampled`` on the adapter's fixed number of points. ``--segments K`` compares K tokens per
signature instead of every point: the means of the per-point features over K consecutive equal
parts (the encoder's own ``segment_means``), so each DTW fills a K x K table -- a cheap elastic
comparison -- and adds a control without learning: DTW over K segment means of the classic DTW
features (x, y, dx, dy, p), at the same cost. ``--seed``: the run's ``--seed`` (its enrolment draws).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

from multissl.recipes import signature_verification as sv  # the recipe's protocol and scoring


def tokens(h: torch.Tensor, mask: torch.Tensor, segments: int) -> tuple:
    """The sequences DTW compares, and their lengths: every point (``segments`` 0), or the
    means of ``segments`` consecutive equal parts of each signature's real points."""
    from multissl.adapters.signature_encoders import segment_means

    if not segments:
        return h, mask.sum(1)
    shortest = int(mask.sum(1).min())
    if segments > shortest:
        raise SystemExit(f"--segments {segments}: the shortest signature has only {shortest} points")
    return segment_means(h, mask, segments).reshape(len(h), segments, -1), torch.full((len(h),), segments)


def fill_dtw(dist: np.ndarray, x: torch.Tensor, length: torch.Tensor, first: List[int], second: List[int],
             rows: np.ndarray) -> float:
    """DTW between ``x[rows[i]]`` and ``x[rows[j]]`` for the file pairs (``first``, ``second``),
    written symmetrically into ``dist``; ``rows`` maps a file index to its row of ``x``. Returns
    the seconds the DTWs took."""
    from multissl.evaluation.dtw import dtw_pairs

    a, b = torch.as_tensor(rows[first]), torch.as_tensor(rows[second])
    t0 = time.perf_counter()
    d = dtw_pairs(x, length, a, b).numpy()
    seconds = time.perf_counter() - t0
    dist[first, second] = d
    dist[second, first] = d
    return seconds


def feature_dtw(run: Path, corpus: Any, folds: List[List[int]], args: Any, sampling: str, segments: int = 0) -> tuple:
    """(N, N) DTW distances between per-point SSL features (NaN where the protocol needs none)
    the seconds the DTWs took and the number of DTWs."""
    from multissl.adapters.signature import SignatureAdapter
    from multissl.model import SSLModel

    n = len(corpus.files)
    dist, seconds, count = np.full((n, n), np.nan), 0.0, 0
    for k, fold in enumerate(folds):
        model = SSLModel.from_pretrained(str(run / f"fold{k}" / "final"))
        adapter = model.adapter
        if sampling == "native":
            adapter = SignatureAdapter(**{**adapter.config, "resample": None})
        eval_idx = np.nonzero(np.isin(corpus.user, fold))[0]
        with torch.no_grad():
            batch = adapter.eval_transform(adapter.prepare([corpus.files[i] for i in eval_idx]))
            h, length = tokens(model.encoder.eval().forward_tokens(batch), batch["mask"], segments)
        first, second = sv.fold_pairs(corpus, fold, args)
        rows = np.full(n, -1)
        rows[eval_idx] = np.arange(len(eval_idx))
        took = fill_dtw(dist, h, length, first, second, rows)
        seconds += took
        count += len(first)
        print(f"fold {k}: {len(first)} pairs, {h.shape[1]} points x {h.shape[2]} features, {took:.0f} s", flush=True)
    return dist, seconds, count


def raw_segment_dtw(corpus: Any, folds: List[List[int]], args: Any, segments: int) -> tuple:
    """The control without learning: DTW over ``segments`` means of the recipe's DTW features
    ((x, y, dx, dy, p) z-scored per signature, the tablet's sampling), same pairs; (distances,
    seconds, DTWs)."""
    from multissl.adapters.signature import SignatureAdapter

    adapter = SignatureAdapter(features=sv.DTW_FEATURES, standardize="signature", resample=None)
    batch = adapter.eval_transform(adapter.prepare(corpus.files))
    x, length = tokens(batch["x"], batch["mask"], segments)
    n = len(corpus.files)
    dist, seconds, count = np.full((n, n), np.nan), 0.0, 0
    for fold in folds:
        first, second = sv.fold_pairs(corpus, fold, args)
        seconds += fill_dtw(dist, x, length, first, second, np.arange(n))
        count += len(first)
    return dist, seconds, count


def score(dist: Dict[str, np.ndarray], corpus: Any, folds: List[List[int]], args: Any, reduction: str) -> Dict[str, Any]:
    """Per-user skilled/random EER (%) of each system, and of each pair fused with the
    cross-fold weight (the recipe's ``cross_fold_weights``: chosen on the other folds' users)."""
    trials = sv.score_trials(dist, corpus, folds, args, reduction)  # the recipe's enrolment draws
    out: Dict[str, Any] = {}
    for a in [name for name in ("feature_dtw", "ssl", "raw_segment_dtw") if name in dist]:
        pair = [{"ssl": t[a], "dtw": t["dtw"]} for t in trials]  # the recipe's fuse() names its inputs so
        weights = sv.cross_fold_weights(pair, folds)
        for t in pair:
            t["fused_cv"] = sv.fuse(t, {u: w for fold, w in zip(folds, weights) for u in fold})
        s = sv.summarise(pair)
        out[a] = {k: s["ssl"][k]["per_user_eer"] for k in sv.KINDS}
        out["dtw"] = {k: s["dtw"][k]["per_user_eer"] for k in sv.KINDS}
        out[f"{a}+dtw"] = {**{k: s["fused_cv"][k]["per_user_eer"] for k in sv.KINDS}, "weights": weights}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="output folder of a finished signature_verification run")
    p.add_argument("--data", required=True, help="the run's SVC2004 folder")
    p.add_argument("--folds", type=int, required=True, help="the run's --folds")
    p.add_argument("--sampling", choices=["native", "resampled"], default="native")
    p.add_argument("--segments", type=int, default=0,
                   help="compare K segment means per signature instead of every point (0: every point)")
    p.add_argument("--seed", type=int, default=0, help="the run's --seed (its enrolment draws)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if a.segments < 0:
        p.error(f"--segments must be 0 (every point) or a positive number of segments, got {a.segments}")
    torch.set_num_threads(a.threads)
    run = Path(a.run)
    args = sv.Args(data=a.data, folds=a.folds, seed=a.seed)
    corpus = sv.load_corpus(args.data, args.genuine, args.enrol_from)
    folds = sv.user_folds(sorted(set(corpus.user.tolist())), args.folds)
    saved = np.load(run / "distances.npz")
    dist = {"ssl": saved["ssl"].astype(np.float64), "dtw": saved["dtw"].astype(np.float64)}
    dist["feature_dtw"], seconds, pairs = feature_dtw(run, corpus, folds, args, a.sampling, a.segments)
    what = f"{a.segments} segment means of SSL features" if a.segments else "SSL per-point features"
    labels = {"ssl": "SSL embedding (pooled)", "feature_dtw": f"DTW on {what} ({a.sampling})",
              "dtw": "DTW (x, y, dx, dy, p)", "ssl+dtw": "SSL embedding + DTW, cross-fold w",
              "feature_dtw+dtw": "feature DTW + DTW, cross-fold w"}
    raw_seconds = None
    if a.segments:
        dist["raw_segment_dtw"], raw_seconds, _ = raw_segment_dtw(corpus, folds, args, a.segments)
        labels["raw_segment_dtw"] = f"DTW on {a.segments} segment means of (x, y, dx, dy, p)"
        labels["raw_segment_dtw+dtw"] = "that + DTW, cross-fold w"
    results = {r: score(dist, corpus, folds, args, r) for r in ("min", "mean")}
    print(f"\nper-user EER %, {a.folds} folds, {args.trials} trials                skilled (min / mean)   random (min)")
    for key, label in labels.items():
        m, e = results["min"][key], results["mean"][key]
        w = f"   w = {m['weights']}" if "weights" in m else ""
        print(f"  {label:<56}{m['skilled']:>6.2f} / {e['skilled']:<6.2f}{m['random']:>12.2f}{w}")
    print(f"feature DTW: {1000 * seconds / pairs:.3f} ms per comparison ({pairs} pairs, {a.threads} thread(s))"
          + (f"; the control: {1000 * raw_seconds / pairs:.3f} ms" if raw_seconds is not None else ""))
    if a.json:
        Path(a.json).write_text(json.dumps({"run": str(run), "folds": a.folds, "sampling": a.sampling,
                                            "segments": a.segments, "seed": a.seed,
                                            "pairs": pairs, "feature_dtw_seconds": seconds,
                                            "ms_per_comparison": 1000 * seconds / pairs, "threads": a.threads,
                                            "raw_segment_ms_per_comparison":
                                                None if raw_seconds is None else 1000 * raw_seconds / pairs,
                                            "per_user_eer_percent": results}, indent=1))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
