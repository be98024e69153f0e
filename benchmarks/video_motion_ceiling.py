"""How far can a linear probe get on video_motion's direction task from 10 labels per class?

The recipe's frozen row fits a logistic regression (``multissl.evaluation.linear_probe``) on the
features of 40 labelled clips. This script gives that same probe, on the recipe's own clips and
label draws (``motion_sets``, ``sample_per_class``), features no encoder can beat: the
generator's ground truth. ``velocity``: the digits' initial velocity summed over the two digits,
the very quantity whose compass quadrant *is* the label; ``digit velocities``: both digits'
initial velocities; ``tracked steps``: every digit's per-frame displacement over the clip (a
perfect tracker; bounces included). What the ``velocity`` probe misses is the cost of learning
the four quadrant boundaries from 40 examples alone: the ceiling of the frozen row.

With finished runs' ``metrics.json`` (``--runs``, the recipe's 10-labels-per-class rows), it also
prints each run's scratch and SSL rows next to the ceiling, draw by draw, and the ceiling minus
scratch: the largest margin a frozen linear probe could show over that scratch network::

    python benchmarks/video_motion_ceiling.py --data ../shared/data/mnist_test --seeds 10 \\
        --runs benchmarks/results/video_motion_10k_64px_pastfuture66_h200_lpft_10draws.json \\
        --json benchmarks/results/video_motion_ceiling.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Dict

import numpy as np

from _common import write_json
from multissl.evaluation.few_labels import sample_per_class
from multissl.evaluation.linear import linear_probe
from multissl.recipes._video import load_digits, motion_sets


def oracle_features(sets: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    velocity = sets["velocity"]                                     # (N, D, 2)
    steps = np.diff(sets["positions"].astype(np.float64), axis=1)   # (N, T-1, D, 2)
    return {"velocity": velocity.sum(axis=1), "digit velocities": velocity.reshape(len(velocity), -1),
            "tracked steps": steps.reshape(len(steps), -1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/mnist_test")
    p.add_argument("--motion-pool", type=int, default=400)
    p.add_argument("--motion-test", type=int, default=400)
    p.add_argument("--frames", type=int, default=10, help="clip length (the recipe's --context-frames)")
    p.add_argument("--labels-per-class", type=int, default=10)
    p.add_argument("--seeds", type=int, default=10, help="label draws 0..seeds-1, as the recipe's --seeds")
    p.add_argument("--seed", type=int, default=0, help="the recipe's --seed (which clips are generated)")
    p.add_argument("--runs", nargs="*", default=[], help="video_motion metrics.json files to set beside the ceiling")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    t0 = time.perf_counter()
    sets = motion_sets(load_digits(a.data), a.motion_pool, a.motion_test, a.frames, a.seed)
    labels, pool, test = sets["labels"], sets["pool"], sets["test"]
    k = a.labels_per_class
    draws = [sample_per_class(labels, pool, k, s) for s in range(a.seeds)]
    ceiling = {name: [linear_probe(z[lab], labels[lab], z[test], labels[test]) for lab in draws]
               for name, z in oracle_features(sets).items()}
    print(f"direction, {k} labels per class, {len(test)} test clips, {a.seeds} draws; the recipe's linear probe on "
          f"ground-truth features ({time.perf_counter() - t0:.0f}s)")
    for name, acc in ceiling.items():
        print(f"  {name:<18} {np.mean(acc):.3f} ± {np.std(acc):.3f}   per draw " + " ".join(f"{v:.3f}" for v in acc))
    best = np.asarray(ceiling["velocity"])
    runs = {}
    for path in a.runs:
        m = json.load(open(path))["motion"]["results"]
        rows = {r: np.asarray(m[r][str(k)]["runs"][:a.seeds]) for r in ("scratch_finetune", "ssl_probe", "ssl_finetune")}
        n = min(len(v) for v in rows.values())
        margin = (best[:n] - rows["scratch_finetune"][:n]) * 100
        runs[path] = {**{r: v.tolist() for r, v in rows.items()}, "ceiling_minus_scratch_points": margin.tolist()}
        print(f"\n{path}")
        for r, v in rows.items():
            print(f"  {r:<18} {v.mean():.3f}   per draw " + " ".join(f"{x:.3f}" for x in v))
        print(f"  ceiling (velocity) minus scratch: {margin.mean():+.1f} ± {margin.std(ddof=1) / np.sqrt(n):.1f} points "
              f"(first 3 draws {margin[:3].mean():+.1f}); SSL frozen is {100 * (best[:n] - rows['ssl_probe']).mean():.1f} "
              f"points below the ceiling")
    if a.json:
        write_json(a.json, {"argv": sys.argv, "labels_per_class": k, "ceiling": ceiling, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
