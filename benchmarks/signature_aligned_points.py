"""Per-point contrast between DTW-aligned points of mined siblings, on one user fold of the
signature_verification recipe: can learned per-point features, compared by DTW, beat the
recipe's pooled embedding or the classic DTW?

The recipe's pooled embedding learns from pairs of whole signatures (a signature and one of its
mutual DTW neighbours among the fold's pretraining signatures, mined without labels). Here the
same mined pairs teach the encoder's *per-point* features instead: DTW aligns the two signatures
(the mining's own features, 128 resampled points), and each point of one view is pulled towards
its aligned point in a view of the other and pushed from every other point in the batch (InfoNCE
over points, as dense contrastive learning does for image pixels), except the few points next to
its partner, which are too alike to be negatives. The recipe's encoder (``SignatureCNN``: width
32, depth 7), its light views and its optimiser; a two-layer per-point projector during training.

Evaluation on the fold's users with the recipe's enrolment draws (``--seed``) and scoring: the
per-point features (``forward_tokens``) of the 128-point signatures compared by DTW at every point
and over ``--segments`` segment means (the cheap elastic comparison of
``benchmarks/signature_feature_dtw.py``), for the new encoder and, as the reference, for the
recipe's own encoder of that fold from a finished run (``--run``), whose pooled embedding and DTW
come from its ``distances.npz``. Prints a table; ``--json`` appends one line.

    python benchmarks/signature_aligned_points.py --run runs/sig4_s0 --fold 0 --steps 540
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from torch import nn

from multissl.positives import mutual_neighbours
from multissl.recipes import signature_verification as sv


def alignments(x: torch.Tensor, pairs: np.ndarray) -> torch.Tensor:
    """For each pair (a, b) of equal-length sequences ``x[a]``, ``x[b]`` (T, F): the DTW path's
    mean column for every row, rounded -> long (P, T): point i of a aligns with point out[p, i] of b."""
    a, b = x[pairs[:, 0]].double(), x[pairs[:, 1]].double()
    p, t = len(pairs), x.shape[1]
    cost = torch.cdist(a, b)  # (P, T, T)
    d = torch.full((p, t + 1, t + 1), float("inf"), dtype=torch.float64)
    d[:, 0, 0] = 0.0
    for i in range(1, t + 1):  # row by row: the in-row dependency is a running minimum
        diag_up = torch.minimum(d[:, i - 1, :-1], d[:, i - 1, 1:]) + cost[:, i - 1]  # from (i-1, j-1) or (i-1, j)
        row = diag_up.clone()
        for j in range(1, t):
            row[:, j] = torch.minimum(row[:, j], row[:, j - 1] + cost[:, i - 1, j])
        d[:, i, 1:] = row
    # backtrack from (T, T) to (1, 1), collecting the columns each row visits
    i = torch.full((p,), t, dtype=torch.long)
    j = torch.full((p,), t, dtype=torch.long)
    sums = torch.zeros(p, t, dtype=torch.float64)
    counts = torch.zeros(p, t, dtype=torch.float64)
    ar = torch.arange(p)
    while True:
        live = (i >= 1) & (j >= 1)
        if not live.any():
            break
        sums[ar[live], i[live] - 1] += (j[live] - 1).double()
        counts[ar[live], i[live] - 1] += 1
        cand = torch.stack([d[ar, i - 1, j - 1], d[ar, i - 1, j], d[ar, i, j - 1]], 1)  # diag, up, left
        step = cand.argmin(1)
        done = (i == 1) & (j == 1)
        new_i = torch.where(done, i - 1, i - (step <= 1).long())
        new_j = torch.where(done, j - 1, j - ((step == 0) | (step == 2)).long())
        i, j = torch.where(live, new_i, i), torch.where(live, new_j, j)
    return (sums / counts.clamp_min(1)).round().long()


def point_nce(za: torch.Tensor, zb: torch.Tensor, align: torch.Tensor, tau: float, guard: int) -> torch.Tensor:
    """InfoNCE over points: point i of ``za[p]`` (B, T, D, L2-normalised) against every point of
    every ``zb``; its positive is ``zb[p, align[p, i]]``, the points of ``zb[p]`` within ``guard``
    of it are left out."""
    bsz, t, _ = za.shape
    logits = za.reshape(bsz * t, -1) @ zb.reshape(bsz * t, -1).T / tau  # (B T, B T)
    target = (torch.arange(bsz).unsqueeze(1) * t + align).reshape(-1)
    col = torch.arange(t)
    near = (col.view(1, 1, t) - align.unsqueeze(-1)).abs()  # (B, T, T): distance to the partner
    drop = (near > 0) & (near <= guard)
    mask = torch.zeros(bsz, t, bsz, t, dtype=torch.bool)
    mask[torch.arange(bsz), :, torch.arange(bsz), :] = drop
    logits = logits.masked_fill(mask.reshape(bsz * t, bsz * t), float("-inf"))
    return nn.functional.cross_entropy(logits, target)


def feature_scores(encoder: nn.Module, adapter, files: List[str], idx: np.ndarray, n: int,
                   pairs: tuple, segments: int) -> Dict[str, np.ndarray]:
    """(N, N) DTW distances of the encoder's per-point features, every point and ``segments`` means."""
    from multissl.adapters.signature_encoders import segment_means
    from multissl.evaluation.dtw import dtw_pairs

    with torch.no_grad():
        batch = adapter.eval_transform(adapter.prepare([files[i] for i in idx]))
        h = encoder.eval().forward_tokens(batch)
    rows = np.full(n, -1)
    rows[idx] = np.arange(len(idx))
    first, second = pairs
    a, b = torch.as_tensor(rows[first]), torch.as_tensor(rows[second])
    out = {}
    seg = segment_means(h, batch["mask"], segments).reshape(len(h), segments, -1)
    for name, (x, length) in {"points": (h, batch["mask"].sum(1)),
                              f"seg{segments}": (seg, torch.full((len(h),), segments))}.items():
        d = np.full((n, n), np.nan)
        v = dtw_pairs(x, length, a, b).numpy()
        d[first, second] = v
        d[second, first] = v
        out[name] = d
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/svc2004_task2")
    p.add_argument("--run", required=True, help="a finished recipe run with the same --folds and --seed")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="the run's --seed (its enrolment draws)")
    p.add_argument("--steps", type=int, default=540, help="optimiser steps (0: score the untrained encoder)")
    p.add_argument("--batch-size", type=int, default=32, help="pairs per step")
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--guard", type=int, default=3, help="points next to the partner left out of the negatives")
    p.add_argument("--k", type=int, default=3, help="mutual DTW neighbours mined per signature")
    p.add_argument("--segments", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--cache", default="/tmp/svc2004_mining_dtw.npy")
    p.add_argument("--name", default="aligned_points")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed + a.fold)
    from multissl.adapters.signature import SignatureAdapter
    from multissl.model import SSLModel

    args = sv.Args(data=a.data, folds=a.folds, seed=a.seed)
    corpus = sv.load_corpus(a.data, args.genuine, args.enrol_from)
    folds = sv.user_folds(sorted(set(corpus.user.tolist())), a.folds)
    fold = folds[a.fold]
    in_fold = np.isin(corpus.user, fold)
    train_idx, eval_idx = np.nonzero(~in_fold)[0], np.nonzero(in_fold)[0]
    n = len(corpus.files)

    cache = Path(a.cache)
    mining = np.load(cache) if cache.is_file() else sv.mining_distances(corpus, True)
    table = mutual_neighbours(mining[np.ix_(train_idx, train_idx)], a.k).numpy()
    pairs = np.array([(i, j) for i in range(len(table)) for j in table[i] if j != i])  # both directions
    mine = SignatureAdapter(features=sv.DTW_FEATURES, standardize="signature", resample=128)
    xm = mine.eval_transform(mine.prepare([corpus.files[i] for i in train_idx]))["x"]
    t0 = time.perf_counter()
    align = alignments(xm, pairs)
    back = torch.as_tensor(alignments_back(align.numpy()))  # b's points -> a's, once for all pairs
    print(f"{len(pairs)} directed pairs among {len(train_idx)} signatures; alignments {time.perf_counter() - t0:.0f} s",
          flush=True)

    reference = SSLModel.from_pretrained(str(Path(a.run) / f"fold{a.fold}" / "final"))
    adapter = reference.adapter  # the recipe's light views, standardised on the same pretraining signatures
    prepared = adapter.prepare([corpus.files[i] for i in train_idx])
    encoder = adapter.build_encoder("cnn", embed_dim=128, segments=64)
    width = encoder.norm.normalized_shape[0]
    head = nn.Sequential(nn.Linear(width, 128), nn.ReLU(), nn.Linear(128, 64))
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=1e-4)
    warm = max(1, a.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / max(1, a.steps)))))
    g = torch.Generator().manual_seed(a.seed + a.fold)
    t0, losses = time.perf_counter(), []
    encoder.train()
    for step in range(a.steps):
        pick = torch.randint(len(pairs), (a.batch_size,), generator=g).numpy()
        ia, ib = pairs[pick, 0], pairs[pick, 1]
        va = adapter.views({k: v[ia] for k, v in prepared.items()}, 1, generator=g)[0]
        vb = adapter.views({k: v[ib] for k, v in prepared.items()}, 1, generator=g)[0]
        za = nn.functional.normalize(head(encoder.forward_tokens(va)), dim=-1)
        zb = nn.functional.normalize(head(encoder.forward_tokens(vb)), dim=-1)
        loss = 0.5 * (point_nce(za, zb, align[pick], a.tau, a.guard) + point_nce(zb, za, back[pick], a.tau, a.guard))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == a.steps - 1:
            print(f"step {step}: loss {np.mean(losses[-50:]):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    train_seconds = time.perf_counter() - t0

    eval_pairs = sv.fold_pairs(corpus, fold, args)
    saved = np.load(Path(a.run) / "distances.npz")
    dist = {"ssl_pooled": saved["ssl"].astype(np.float64), "dtw": saved["dtw"].astype(np.float64)}
    for tag, (enc, adp) in {"aligned": (encoder, adapter), "recipe": (reference.encoder, reference.adapter)}.items():
        for name, d in feature_scores(enc, adp, corpus.files, eval_idx, n, eval_pairs, a.segments).items():
            dist[f"{tag}_{name}"] = d
    res = sv.summarise(sv.score_trials(dist, corpus, [fold], args, "min"))
    row = {"name": a.name, "fold": a.fold, "seed": a.seed, "steps": a.steps, "batch_size": a.batch_size,
           "tau": a.tau, "guard": a.guard, "k": a.k, "train_seconds": round(train_seconds, 1),
           "final_loss": float(np.mean(losses[-50:])) if losses else None,  # --steps 0: the untrained encoder
           "per_user_eer": {s: {k: res[s][k]["per_user_eer"] for k in sv.KINDS} for s in dist}}
    print(f"\nfold {a.fold} (users {fold[0]}-{fold[-1]}), seed {a.seed}: per-user EER %, min score   skilled  random")
    for s in dist:
        print(f"  {s:<28}{row['per_user_eer'][s]['skilled']:>8.2f}{row['per_user_eer'][s]['random']:>8.2f}")
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


def alignments_back(align: np.ndarray) -> np.ndarray:
    """From a's-point -> b's-point maps (P, T), the b -> a maps: for each point of b, the mean of
    the points of a that map to it (nearest mapped point where none does)."""
    p, t = align.shape
    out = np.zeros((p, t), dtype=np.int64)
    for r in range(p):
        sums = np.bincount(align[r], weights=np.arange(t), minlength=t)
        cnt = np.bincount(align[r], minlength=t)
        have = np.nonzero(cnt)[0]
        vals = sums[have] / cnt[have]
        out[r] = np.rint(np.interp(np.arange(t), have, vals)).astype(np.int64)
    return out


if __name__ == "__main__":
    sys.exit(main())
