"""Label draw by label draw: the motion-direction rows of several ``video_motion`` runs.

The recipe's few-label comparison draws the labelled clips per seed, and the from-scratch
network swings far more from one draw to the next than the SSL rows do, so a mean over three
draws can move by a few points with the draws alone. This script puts finished runs side by
side on the draws they share: per-draw accuracy of every row, each SSL row minus scratch on the
same draw, and (with two or more runs) each run's SSL rows minus the first run's, with the
standard error of the paired mean. Prints a table, writes JSON and a PNG (accuracy per draw).

    python benchmarks/video_motion_draws.py \\
        benchmarks/results/video_motion_10k_64px_future_frame_24epochs_lpft_10draws.json \\
        benchmarks/results/video_motion_10k_64px_future_frame_24epochs_bidirectional8_lpft_10draws.json \\
        --names "24 ep future" "+8 ep past+future" --png docs/img/video_motion_draws.png \\
        --json /tmp/video_motion_draws.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

ROWS = ("scratch_finetune", "ssl_probe", "ssl_finetune")
LABELS = {"scratch_finetune": "from scratch", "ssl_probe": "SSL frozen + LR", "ssl_finetune": "SSL fine-tuned"}


def load_runs(path: str, k: str) -> Dict[str, np.ndarray]:
    """Per-draw accuracies of each row at ``k`` labels per class (exit status 2 on bad input)."""
    try:
        results = json.loads(Path(path).read_text())["motion"]["results"]
        return {row: np.asarray(results[row][k]["runs"], dtype=float) for row in ROWS}
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"video_motion_draws: error: {path}: not a video_motion metrics.json with {k} labels per class "
              f"({type(e).__name__}: {e})", file=sys.stderr)
        raise SystemExit(2)


def paired(x: np.ndarray) -> Dict[str, Any]:
    """Mean, standard error and wins of paired differences (in points)."""
    sem = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return {"per_draw": (100 * x).round(2).tolist(), "mean": 100 * float(x.mean()), "sem": 100 * sem,
            "wins": int((x > 0).sum()), "draws": int(len(x))}


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="video_motion metrics.json files (or copies in benchmarks/results)")
    p.add_argument("--names", nargs="+", help="one short name per run (default: the file names)")
    p.add_argument("--labels-per-class", default="10")
    p.add_argument("--json", help="write the table here")
    p.add_argument("--png", help="plot accuracy per draw here")
    args = p.parse_args(argv)
    names = args.names or [Path(r).stem for r in args.runs]
    if len(names) != len(args.runs):
        p.error(f"--names needs one name per run ({len(args.runs)}), got {len(names)}")
    runs = [load_runs(r, args.labels_per_class) for r in args.runs]
    draws = min(len(r["scratch_finetune"]) for r in runs)
    runs = [{row: v[:draws] for row, v in r.items()} for r in runs]  # the draws every run has (seeds 0..n-1)
    scratch = runs[0]["scratch_finetune"]
    if any(not np.allclose(r["scratch_finetune"], scratch, atol=0.01) for r in runs[1:]):
        print("warning: the runs' scratch rows differ: not the same draws or settings", file=sys.stderr)

    out: Dict[str, Any] = {"labels_per_class": int(args.labels_per_class), "draws": draws, "runs": {}}
    print(f"{args.labels_per_class} labels per class, {draws} draws; points = accuracy x 100")
    print(f"{'run / row':44s} {'mean':>6s}   {'minus scratch (mean ± s.e., wins)':>34s}")
    for name, r in zip(names, runs):
        entry: Dict[str, Any] = {}
        for row in ROWS:
            entry[row] = {"accuracy": r[row].round(4).tolist(), "mean": float(r[row].mean())}
            gain = ""
            if row != "scratch_finetune":
                entry[row]["minus_scratch"] = d = paired(r[row] - r["scratch_finetune"])
                gain = f"{d['mean']:+6.1f} ± {d['sem']:.1f} ({d['wins']}/{draws})"
            print(f"{name + ' / ' + LABELS[row]:44s} {r[row].mean():6.3f}   {gain:>34s}")
        out["runs"][name] = entry
    for name, r in list(zip(names, runs))[1:]:
        for row in ROWS[1:]:
            d = paired(r[row] - runs[0][row])
            out["runs"][name][row]["minus_" + names[0]] = d
            print(f"{name} minus {names[0]}, {LABELS[row]}: {d['mean']:+.1f} ± {d['sem']:.1f} points "
                  f"(better on {d['wins']}/{draws} draws)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.8))
        x = np.arange(draws)
        ax.plot(x, scratch, "o-", color="0.4", label=LABELS["scratch_finetune"])
        for i, (name, r) in enumerate(zip(names, runs)):
            ax.plot(x, r["ssl_probe"], "s-", color=f"C{i}", label=f"{name}: {LABELS['ssl_probe']}")
            ax.plot(x, r["ssl_finetune"], "^--", color=f"C{i}", alpha=0.6, label=f"{name}: {LABELS['ssl_finetune']}")
        ax.set_xticks(x)
        ax.set_xlabel("label draw (seed)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"motion direction, {args.labels_per_class} labels per class, per draw")
        ax.grid(alpha=0.3)
        low = min(float(scratch.min()), *(float(r[row].min()) for r in runs for row in ROWS[1:]))
        ax.set_ylim(low - 0.12, None)  # room for the legend below the curves
        ax.legend(fontsize=7, loc="lower center", ncol=2)
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
