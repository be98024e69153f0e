"""One user fold of the signature_verification recipe with a pretraining variant: how the SSL
embedding's EER moves with the mined positives, the augmentation and the encoder's pooling.

Pretrains the recipe's encoder on the other folds' signatures exactly as the recipe does (same
fold split, seed ``--seed + fold``, ``pretrain`` with the signature adapter), with the variant's
options (``--variant``: JSON of ``pretrain`` keywords, plus ``k`` for the mutual DTW neighbours
used as positives, 0 for none, or ``"writer_positives": true`` for a diagnostic ceiling that is
not SSL: every genuine signature's positives are its writer's other genuine ones), embeds the
fold's signatures and scores them with the recipe's
own enrolment draws and EER; DTW comes from a finished recipe run's ``distances.npz`` (``--run``).
The all-pairs mining DTW (about 3 minutes) is cached in ``--cache``. Prints one line::

    python benchmarks/signature_fold_variants.py --run runs/sig4 --fold 0 --name light_seg64 \\
        --variant '{"k": 3, "adapter_config": {"rotation": 5.0, "shear": 0.05, "scale": 0.05,
                    "speed": 0.02, "time_warp": 0.05}, "encoder_kwargs": {"segments": 64}}'
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from multissl.api import pretrain
from multissl.positives import mutual_neighbours
from multissl.recipes.signature_verification import (Args, load_corpus, mining_distances, score_trials, summarise,
                                                      user_folds)
from multissl.trainer import embed_prepared


def same_writer_positives(user: np.ndarray, genuine: np.ndarray) -> torch.Tensor:
    """(N, G) table: each genuine signature's partners are the other genuine signatures of its
    writer (the labels a writer-independent SSL run never sees); forgeries get only themselves."""
    n = len(user)
    groups = {u: np.nonzero((user == u) & genuine)[0] for u in np.unique(user)}
    width = max(len(g) for g in groups.values()) - 1
    table = np.repeat(np.arange(n)[:, None], width, axis=1)
    for g in groups.values():
        for i in g:
            others = g[g != i]
            table[i, :len(others)] = others
    return torch.as_tensor(table)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/svc2004_task2")
    p.add_argument("--run", required=True, help="a finished recipe run with the same --folds (for its DTW distances)")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--name", default="variant")
    p.add_argument("--variant", default='{"k": 3}')
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="/tmp/svc2004_mining_dtw.npy")
    p.add_argument("--json", default=None, help="append the result to this JSON-lines file")
    a = p.parse_args()
    torch.set_num_threads(1)
    spec = json.loads(a.variant)
    corpus = load_corpus(a.data, 20, 10)
    fold = user_folds(sorted(set(corpus.user.tolist())), a.folds)[a.fold]
    in_fold = np.isin(corpus.user, fold)
    train_idx, eval_idx = np.nonzero(~in_fold)[0], np.nonzero(in_fold)[0]
    k = int(spec.pop("k", 3))
    writer_positives = bool(spec.pop("writer_positives", False))
    positives = None
    if writer_positives:  # a diagnostic ceiling, not SSL: the writers' labels choose the positives
        positives = same_writer_positives(corpus.user[train_idx], corpus.number[train_idx] <= Args.genuine)
    elif k:
        cache = Path(a.cache)
        mining = np.load(cache) if cache.is_file() else mining_distances(corpus, True)
        if not cache.is_file():
            np.save(cache, mining)
        positives = mutual_neighbours(mining[np.ix_(train_idx, train_idx)], k)
    t = time.perf_counter()
    model = pretrain([corpus.files[i] for i in train_idx], adapter="signature", seed=a.seed + a.fold, progress=False,
                     positives=positives, **spec)
    z = embed_prepared(model.encoder, model.adapter, model.adapter.prepare([corpus.files[i] for i in eval_idx]))
    ssl = np.full((len(corpus.files),) * 2, np.nan)
    ssl[np.ix_(eval_idx, eval_idx)] = torch.cdist(z, z).numpy()
    dtw = np.load(Path(a.run) / "distances.npz")["dtw"]
    res = summarise(score_trials({"ssl": ssl, "dtw": dtw}, corpus, [fold], Args(data=a.data, folds=a.folds, seed=a.seed),
                                 "min"))
    row = {"name": a.name, "fold": a.fold, "users": [fold[0], fold[-1]], "variant": json.loads(a.variant),
           "ssl_skilled": res["ssl"]["skilled"]["per_user_eer"], "ssl_random": res["ssl"]["random"]["per_user_eer"],
           "dtw_skilled": res["dtw"]["skilled"]["per_user_eer"], "seconds": round(time.perf_counter() - t, 1)}
    print(f"{a.name} fold {a.fold} (users {fold[0]}-{fold[-1]}): SSL skilled/user {row['ssl_skilled']:.2f} % "
          f"random {row['ssl_random']:.2f} % (DTW skilled {row['dtw_skilled']:.2f} %); {row['seconds']:.0f} s")
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
