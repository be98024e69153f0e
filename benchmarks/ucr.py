"""UCR/UEA classification with frozen representations: multissl vs untrained encoder vs T-Loss.

Protocol (the project's issue #4; :mod:`multissl.evaluation.timeseries_protocol`):

- datasets bundled offline by aeon (``aeon.datasets.load_classification``): GunPoint and
  ItalyPowerDemand (UCR, univariate), BasicMotions (UEA, 6 channels); official train/test splits;
- the encoder is pretrained on the train split **without labels** through ``multissl.pretrain``
  (the time-series adapter's default encoder, TS2Vec's dilated CNN, max-pooled; width 64, depth 8,
  128-d by default -- the paper's depth 10 and 320-d with ``--depth 10 --embed-dim 320``; the method given by ``--method``, default ``ts2vec``; a budget of
  ``--iters`` optimiser steps at batch 8, TS2Vec's 200 for small data); ``--encoder causal_cnn``
  uses T-Loss's own encoder at the paper's sizes instead (e.g. with ``--method tloss
  --batch-size 10 --iters 1500``, the paper's budget); ``--channel-independent`` encodes every
  channel of a multivariate series alone with the same weights and concatenates the vectors;
- every train and test series -> one vector; RBF SVM with C by 5-fold cross-validation over
  10^-4 .. 10^4 and a hard margin (hard margin directly on tiny train sets), plus a linear probe;
- references, with the same SVM: the same encoder **untrained** (the initial weights of the same
  seed), the raw series (flattened, same normalisation), and the published T-Loss figures
  (Franceschi et al. 2019, K = 10 negatives, SVM on the encoder trained on the train split):
  GunPoint 0.980, ItalyPowerDemand 0.954, BasicMotions 1.0;
- few labels (GunPoint): the pretrained encoder fine-tuned with 5 labelled series per class vs the
  same encoder trained from scratch on those series (``multissl.evaluation.finetune``, identical
  augmentation, optimiser and steps), one label draw per seed.

    pip install -e ".[benchmarks]"                        # aeon
    nice -n 5 python benchmarks/ucr.py                    # 3 datasets x 3 seeds (~10 min on 2 CPU cores)
    python benchmarks/ucr.py --quick                      # 1 seed, 20 steps: a smoke run

Prints the table and writes ``benchmarks/results/ucr.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, log, machine_info, print_table, set_threads, write_json  # noqa: E402

DATASETS = ("GunPoint", "ItalyPowerDemand", "BasicMotions")
#: Franceschi et al. 2019, Table 2 / Table 3 (K = 10), SVM accuracy on the official test splits
TLOSS_K10 = {"GunPoint": 0.980, "ItalyPowerDemand": 0.954, "BasicMotions": 1.0}
#: the encoders' sizes by --encoder. TS2Vec's own is width 64, depth 10, 320-d (Yue et al. 2022,
#: sec. 4); the default here is smaller (--depth, --embed-dim) to fit 3 datasets x 3 seeds into
#: minutes on a 2-core CPU. causal_cnn: T-Loss's encoder at the paper's sizes (Franceschi et al.
#: 2019, appendix).
ENCODER_SIZES = {"ts2vec": {"width": 64, "depth": 8, "embed_dim": 128},
                 "causal_cnn": {"channels": 40, "depth": 10, "reduced_size": 160, "embed_dim": 320}}


def encoder_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    """The encoder's constructor options: its sizes, then --depth / --embed-dim / --pooling."""
    kwargs = dict(ENCODER_SIZES[args.encoder])
    if args.encoder == "ts2vec":
        kwargs["pooling"] = args.pooling
        if args.channel_independent:
            kwargs["channel_independent"] = True
    kwargs.update({k: v for k, v in (("depth", args.depth), ("embed_dim", args.embed_dim)) if v is not None})
    return kwargs


def adapter_config(args: argparse.Namespace) -> Dict[str, Any] | None:
    """The time-series adapter's options: --preset, then any --adapter-config overrides."""
    config = {**({"preset": args.preset} if args.preset else {}), **json.loads(args.adapter_config)}
    return config or None


def load(name: str):
    """The official splits as float32: an (N, C, T) array, or a list of (C, T_i) arrays for a data
    set of unequal lengths (e.g. JapaneseVowels), which the adapter pads; labels as 0 .. K-1."""
    from aeon.datasets import load_classification

    xtr, ytr = load_classification(name, split="train")
    xte, yte = load_classification(name, split="test")
    classes = sorted(set(ytr) | set(yte))
    index = {c: i for i, c in enumerate(classes)}
    return (as_float32(xtr), np.array([index[c] for c in ytr]), as_float32(xte), np.array([index[c] for c in yte]))


def as_float32(x):
    return x.astype(np.float32) if isinstance(x, np.ndarray) else [np.asarray(s, dtype=np.float32) for s in x]


def shape(x) -> List[int]:
    """(N, C, T), or (N, C, longest T) for unequal lengths."""
    return list(x.shape) if isinstance(x, np.ndarray) else [len(x), x[0].shape[0], max(s.shape[1] for s in x)]


def raw_vectors(ad, ptr, pte):
    """The normalised series flattened, zero after each series' end (both splits to one length)."""
    xtr, xte = ad.eval_transform(ptr)["x"], ad.eval_transform(pte)["x"]
    t = max(xtr.shape[-1], xte.shape[-1])
    return tuple(torch.nn.functional.pad(x, (0, t - x.shape[-1])).reshape(len(x), -1).numpy() for x in (xtr, xte))


def asinh_input(xtr, xte):
    """``asinh((x - mean) / std)`` per channel, with the train split's statistics over all its steps."""
    steps = xtr.transpose(1, 0, 2) if isinstance(xtr, np.ndarray) else np.concatenate(xtr, axis=1)[:, None]
    mean, std = steps.mean(axis=(1, 2), keepdims=True)[:, 0], steps.std(axis=(1, 2), keepdims=True)[:, 0] + 1e-8
    squash = lambda x: np.arcsinh((x - mean) / std).astype(np.float32)  # noqa: E731
    return tuple(np.stack([squash(s) for s in x]) if isinstance(x, np.ndarray) else [squash(s) for s in x]
                 for x in (xtr, xte))


def run_dataset(name: str, args: argparse.Namespace) -> Dict[str, Any]:
    from multissl import pretrain
    from multissl.evaluation import FinetuneConfig, finetune, linear_probe
    from multissl.evaluation.few_labels import sample_per_class
    from multissl.evaluation.timeseries_protocol import svm_classify
    from multissl.trainer import embed_prepared

    xtr, ytr, xte, yte = load(name)
    if args.input == "asinh":  # large excursions grow like a logarithm; statistics of the train split only
        xtr, xte = asinh_input(xtr, xte)
    steps_per_epoch = max(1, len(xtr) // args.batch_size)
    epochs = max(1, math.ceil(args.iters / steps_per_epoch))
    log(f"{name}: train {shape(xtr)}, test {shape(xte)}, {len(set(ytr))} classes; {epochs} epochs x "
        f"{steps_per_epoch} steps")
    runs: List[Dict[str, Any]] = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        model = pretrain(xtr, adapter="timeseries", method=args.method, epochs=epochs, batch_size=args.batch_size,
                         seed=seed, encoder=args.encoder, encoder_kwargs=encoder_kwargs(args), progress=False,
                         mixed_precision="no", adapter_config=adapter_config(args),
                         method_kwargs=json.loads(args.method_hparams))
        t_pre = time.perf_counter() - t0
        ad = model.adapter
        ptr, pte = ad.prepare(xtr), ad.prepare(xte)
        ztr, zte = embed_prepared(model.encoder, ad, ptr).numpy(), embed_prepared(model.encoder, ad, pte).numpy()
        torch.manual_seed(seed)  # pretrain() seeds the initial weights the same way
        untrained = ad.build_encoder(args.encoder, **encoder_kwargs(args)).eval()
        utr, ute = embed_prepared(untrained, ad, ptr).numpy(), embed_prepared(untrained, ad, pte).numpy()
        rtr, rte = raw_vectors(ad, ptr, pte)
        ssl = svm_classify(ztr, ytr, zte, yte, seed=seed)
        run = {
            "seed": seed,
            "pretrain_seconds": round(t_pre, 1),
            "final_loss": model.config["history"][-1]["loss"],
            "ssl_svm": ssl["accuracy"], "ssl_svm_C": ssl["C"],
            "untrained_svm": svm_classify(utr, ytr, ute, yte, seed=seed)["accuracy"],
            "raw_svm": svm_classify(rtr, ytr, rte, yte, seed=seed)["accuracy"],
            "ssl_linear": linear_probe(ztr, ytr, zte, yte),
            "untrained_linear": linear_probe(utr, ytr, ute, yte),
        }
        if name in args.few_label_datasets:
            lab = sample_per_class(ytr, np.arange(len(ytr)), args.labels_per_class, seed)
            cfg = FinetuneConfig(steps=args.finetune_steps, batch_size=8, lr=1e-3, seed=seed, device="cpu",
                                 probe_steps=args.finetune_probe_steps,
                                 encoder_lr_ratio=args.finetune_encoder_lr_ratio)
            sub = {k: v[torch.as_tensor(lab)] for k, v in ptr.items()}
            torch.manual_seed(seed)
            scratch = ad.build_encoder(args.encoder, **encoder_kwargs(args))
            for row, enc in (("scratch_finetune", scratch), ("ssl_finetune", model.encoder)):
                run[f"few_{row}"] = finetune(enc, ad, sub, ytr[lab], pte, yte, embed_dim=model.embed_dim,
                                             config=cfg)["accuracy"]
        runs.append(run)
        log(f"  seed {seed}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in run.items() if k != "seed"))
    keys = [k for k in runs[0] if k not in ("seed", "ssl_svm_C")]
    summary = {k: {"mean": statistics.fmean(r[k] for r in runs),
                   "std": statistics.pstdev([r[k] for r in runs]) if len(runs) > 1 else 0.0} for k in keys}
    return {"train_shape": shape(xtr), "test_shape": shape(xte), "epochs": epochs,
            "steps": epochs * steps_per_epoch, "tloss_k10": TLOSS_K10.get(name), "runs": runs, "summary": summary}


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--method", default="ts2vec")
    p.add_argument("--method-hparams", default="{}",
                   help='the method\'s hyperparameters as JSON, e.g. \'{"negative_pool": 40}\' for tloss')
    p.add_argument("--preset", help="the time-series adapter's augmentation preset for the views (default: the "
                                    "method's own: 'ts2vec' for ts2vec, 'default' for the others)")
    p.add_argument("--adapter-config", default="{}",
                   help='JSON of time-series adapter options over the preset, e.g. \'{"scaling": 0.5}\'')
    p.add_argument("--iters", type=int, default=200, help="optimiser steps of pretraining (TS2Vec: 200)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--few-label-datasets", nargs="*", default=["GunPoint"])
    p.add_argument("--labels-per-class", type=int, default=5)
    p.add_argument("--finetune-steps", type=int, default=200)
    p.add_argument("--finetune-encoder-lr-ratio", type=float, default=1.0,
                   help="encoder learning rate = 1e-3 x this, for the pretrained and the scratch encoder alike "
                        "(the head keeps 1e-3; the image recipes use 0.1)")
    p.add_argument("--finetune-probe-steps", type=int, default=0,
                   help="LP-FT: train the head alone on frozen features first (both encoders alike)")
    p.add_argument("--encoder", default="ts2vec", choices=("ts2vec", "causal_cnn"),
                   help="ts2vec: TS2Vec's dilated CNN (default); causal_cnn: T-Loss's causal CNN + linear layer "
                        "at the paper's sizes")
    p.add_argument("--depth", type=int, help="encoder blocks (default 8 for ts2vec, TS2Vec's paper: 10; "
                                             "causal_cnn: 10)")
    p.add_argument("--embed-dim", type=int, help="representation width (default 128 for ts2vec, TS2Vec's paper: "
                                                 "320; causal_cnn: 320)")
    p.add_argument("--pooling", default="max", choices=("max", "mean", "maxmean"),
                   help="ts2vec only: per-step features -> one vector (TS2Vec: max)")
    p.add_argument("--channel-independent", action="store_true",
                   help="ts2vec only: every channel through the same encoder alone, the channels' vectors "
                        "concatenated (PatchTST's channel independence; no change on univariate data sets)")
    p.add_argument("--input", default="raw", choices=("raw", "asinh"),
                   help="asinh: compress each channel's amplitude, asinh((x - mean) / std) with the train split's "
                        "statistics, before the adapter")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared 2-core CPU)")
    p.add_argument("--quick", action="store_true", help="1 seed, 20 steps")
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "ucr.json"))
    args = p.parse_args(argv)
    if args.channel_independent and args.encoder != "ts2vec":
        p.error("--channel-independent needs --encoder ts2vec")
    if args.quick:
        args.seeds, args.iters, args.finetune_steps = [0], 20, 20
    try:
        import aeon  # noqa: F401
    except ImportError:
        print("benchmarks/ucr.py needs aeon: pip install -e '.[benchmarks]'", file=sys.stderr)
        return 2
    set_threads(args.threads)
    t0 = time.perf_counter()
    results = {name: run_dataset(name, args) for name in args.datasets}
    rows = []
    for name, r in results.items():
        s = r["summary"]
        rows.append([name, f"{s['ssl_svm']['mean']:.3f} ± {s['ssl_svm']['std']:.3f}",
                     f"{s['untrained_svm']['mean']:.3f} ± {s['untrained_svm']['std']:.3f}",
                     f"{s['raw_svm']['mean']:.3f}", "—" if r["tloss_k10"] is None else r["tloss_k10"],
                     f"{s['ssl_linear']['mean']:.3f}", f"{s['untrained_linear']['mean']:.3f}"])
    print()
    views = f"{args.method}:{args.preset}" if args.preset else args.method
    views += "" if args.method_hparams.strip() in ("", "{}") else f" {args.method_hparams}"
    views += "" if args.adapter_config.strip() in ("", "{}") else f" {args.adapter_config}"
    views += "" if args.encoder == "ts2vec" else f" ({args.encoder})"
    views += " channel-independent" if args.channel_independent else ""
    views += "" if args.input == "raw" else f" [{args.input} input]"
    table = print_table(rows, ["dataset", f"multissl {views} SVM", "untrained SVM", "raw SVM",
                               "T-Loss K=10", "multissl linear", "untrained linear"])
    for n, r in results.items():
        s = r["summary"]
        if "few_ssl_finetune" not in s:
            continue
        wins = sum(run["few_ssl_finetune"] > run["few_scratch_finetune"] for run in r["runs"])
        print(f"\n{n}, {args.labels_per_class} labels/class, fine-tuned: pretrained "
              f"{s['few_ssl_finetune']['mean']:.3f} ± {s['few_ssl_finetune']['std']:.3f} vs from scratch "
              f"{s['few_scratch_finetune']['mean']:.3f} ± {s['few_scratch_finetune']['std']:.3f}; pretrained "
              f"better on {wins} of {len(r['runs'])} label draws")
    payload = {"benchmark": "ucr", "command": "python benchmarks/ucr.py " + " ".join(argv or sys.argv[1:]),
               "config": vars(args), "encoder": encoder_kwargs(args), "machine": machine_info("cpu"),
               "total_seconds": round(time.perf_counter() - t0, 1), "results": results, "table": table}
    write_json(args.output, payload)
    print(f"\nwrote {args.output} ({payload['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
