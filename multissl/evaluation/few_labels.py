"""Few-label comparison: SSL-pretrained vs from scratch on identical labelled subsets.

For each k (labelled records per class) and seed, the same k·C records are drawn from a pool;
every row is evaluated on the same held-out test records:

- ``raw_probe``: logistic regression on the raw inputs (flattened), a reference point;
- ``scratch_finetune``: the same encoder architecture, randomly initialised (seeded), trained
  end to end with :func:`multissl.evaluation.finetune` — same augmentations, optimiser and
  steps as the SSL fine-tune, so the comparison differs only in the starting weights;
- ``untrained_probe``: the same probe on the embeddings of the randomly initialised encoder
  (given as ``untrained_embeddings``): what the architecture alone gives, so the SSL probe's
  margin over it is what pretraining added;
- ``ssl_probe``: logistic regression on frozen SSL embeddings (the same probe as ``raw_probe``);
- ``ssl_finetune``: the pretrained encoder fine-tuned exactly like the from-scratch one.

Used by ``multissl demo`` and the ``image_few_labels`` recipe.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from multissl.adapters.base import Adapter, Prepared, take
from multissl.evaluation.finetune import FinetuneConfig, finetune
from multissl.evaluation.linear import linear_probe

ROWS = ("raw_probe", "untrained_probe", "scratch_finetune", "ssl_probe", "ssl_finetune")
ROW_LABELS = {
    "raw_probe": "raw input + logistic regression",
    "untrained_probe": "untrained encoder + logistic regression",
    "scratch_finetune": "from scratch (same aug, same budget)",
    "ssl_probe": "SSL frozen + logistic regression",
    "ssl_finetune": "SSL fine-tuned",
}


def sample_per_class(labels: np.ndarray, pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` indices per class drawn from ``pool`` (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = pool[labels[pool] == c]
        if len(members) < k:
            raise ValueError(f"class {c} has {len(members)} records in the labelled pool, fewer than k={k}")
        chosen.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(chosen))


@dataclass
class FewLabelConfig:
    labels_per_class: Sequence[int] = (1, 5, 10)
    seeds: Sequence[int] = (0, 1, 2)
    finetune: Optional[FinetuneConfig] = None  # seed is set per run


def compare_few_labels(encoder: nn.Module, embed_dim: int, adapter: Adapter, prepared: Prepared, labels: np.ndarray,
                       pool: np.ndarray, test: np.ndarray, build_scratch: Callable[[], nn.Module],
                       embeddings: np.ndarray, raw: Optional[np.ndarray] = None,
                       untrained_embeddings: Optional[np.ndarray] = None,
                       config: Optional[FewLabelConfig] = None, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Accuracy (mean, std, runs) of every row for every k. ``embeddings`` are the SSL
    embeddings of all records; ``raw`` the flattened raw inputs and ``untrained_embeddings`` those of
    the randomly initialised encoder (each row skipped when None)."""
    cfg = config or FewLabelConfig()
    ft = cfg.finetune or FinetuneConfig()
    num_classes = int(labels.max()) + 1
    optional = {"raw_probe": raw, "untrained_probe": untrained_embeddings}
    rows = [r for r in ROWS if optional.get(r, embeddings) is not None]
    runs: Dict[str, Dict[int, List[float]]] = {r: {k: [] for k in cfg.labels_per_class} for r in rows}
    test_t = torch.as_tensor(test)
    for k in cfg.labels_per_class:
        for seed in cfg.seeds:
            lab = sample_per_class(labels, pool, k, seed)
            if raw is not None:
                runs["raw_probe"][k].append(linear_probe(raw[lab], labels[lab], raw[test], labels[test]))
            if untrained_embeddings is not None:
                u = untrained_embeddings
                runs["untrained_probe"][k].append(linear_probe(u[lab], labels[lab], u[test], labels[test]))
            runs["ssl_probe"][k].append(linear_probe(embeddings[lab], labels[lab], embeddings[test], labels[test]))
            torch.manual_seed(seed)
            scratch = build_scratch()
            run_cfg = FinetuneConfig(**{**ft.__dict__, "seed": seed})
            for row, enc in (("scratch_finetune", scratch), ("ssl_finetune", encoder)):
                r = finetune(enc, adapter, take(prepared, torch.as_tensor(lab)), labels[lab], take(prepared, test_t),
                             labels[test], embed_dim=embed_dim, num_classes=num_classes, config=run_cfg)
                runs[row][k].append(r["accuracy"])
        log(f"  {k:>3} labels/class: " + "  ".join(f"{r}={np.mean(runs[r][k]):.3f}" for r in rows))
    return {r: {str(k): {"mean": float(np.mean(v)), "std": float(np.std(v)), "runs": v} for k, v in runs[r].items()}
            for r in rows}


def gains(summary: Dict[str, Any]) -> Dict[str, Any]:
    """SSL minus from-scratch accuracy per k, for the probe and the fine-tune (and the SSL probe
    minus the untrained encoder's probe, when that row was run)."""
    out = {}
    for k in summary["scratch_finetune"]:
        base = summary["scratch_finetune"][k]["mean"]
        out[k] = {"ssl_probe_minus_scratch": summary["ssl_probe"][k]["mean"] - base,
                  "ssl_finetune_minus_scratch": summary["ssl_finetune"][k]["mean"] - base}
        if "untrained_probe" in summary:
            out[k]["ssl_probe_minus_untrained_probe"] = (summary["ssl_probe"][k]["mean"]
                                                          - summary["untrained_probe"][k]["mean"])
    return out


def format_table(summary: Dict[str, Any], n_seeds: int) -> str:
    ks = list(next(iter(summary.values())).keys())
    head = f"{'accuracy (mean ± std, ' + str(n_seeds) + ' seeds)':<40}" + "".join(
        f"{f'{k} label' + ('s' if int(k) > 1 else '') + '/class':>19}" for k in ks)
    lines = [head, "-" * len(head)]
    for r, per_k in summary.items():
        cells = "".join(f"{per_k[k]['mean']:>11.3f} ± {per_k[k]['std']:.3f}" for k in ks)
        lines.append(f"{ROW_LABELS[r]:<40}{cells}")
    return "\n".join(lines)


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def plot_accuracy(summary: Dict[str, Any], path: Path, title: str) -> None:
    """Accuracy vs labels per class, one line per row, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [int(k) for k in next(iter(summary.values())).keys()]
    fig, ax = plt.subplots(figsize=(6, 4))
    for r, per_k in summary.items():
        ax.errorbar(ks, [per_k[str(k)]["mean"] for k in ks], yerr=[per_k[str(k)]["std"] for k in ks],
                    marker="o", capsize=3, label=ROW_LABELS[r])
    ax.set_xscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("labelled records per class")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
