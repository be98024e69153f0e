"""The ``multissl`` command line.

    multissl demo [--modality image]
    multissl pretrain --adapter image --method simclr --data PATH [--epochs --batch-size --output --config]
    multissl embed --model DIR --data PATH --output FILE.npy
    multissl evaluate --model DIR --data PATH --protocol knn|linear|finetune
    multissl push --model DIR --repo-id ID
    multissl recipes

A user mistake (bad argument, missing or unreadable file, unknown name) prints one line
``multissl: error: ...`` to stderr and exits with status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

from multissl.demo import DEMOS
from multissl.bad_records import check_on_bad_record
from multissl.errors import ConfigError, DataError, UserError

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="multissl", description="Self-supervised learning across modalities.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="the main job on embedded data: pretrain, then few-label comparison with scratch")
    d.add_argument("--modality", default="image", choices=sorted(DEMOS), help="which modality's demo")
    d.add_argument("--output", default=None, help="output folder (default runs/demo-<modality>)")
    d.add_argument("--epochs", type=int, default=None, help="pretraining epochs (default: the demo's budget)")
    d.add_argument("--method", default=None, help="SSL method (default simclr)")
    d.add_argument("--seeds", type=int, default=3, help="number of label draws per row")
    d.add_argument("--no-progress", action="store_true")

    t = sub.add_parser("pretrain", help="pretrain an encoder without labels")
    t.add_argument("--adapter", default="image")
    t.add_argument("--method", default=None, help="default: the adapter's recommendation")
    t.add_argument("--data", required=True, help="a folder of files, .npy/.npz, Parquet/Arrow, or a saved datasets folder")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--encoder", default=None)
    t.add_argument("--seed", type=int, default=None, help="default 0")
    t.add_argument("--output", default=None, help="checkpoints, logs and final/ go here (default runs/pretrain)")
    t.add_argument("--config", default=None, help="JSON file of pretrain() options (lr, method_kwargs, ...); "
                                                  "flags given on the command line take precedence")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output")
    t.add_argument("--overwrite", action="store_true", help="start afresh even if --output holds an earlier run")
    t.add_argument("--mixed-precision", default=None, choices=["auto", "no", "bf16", "fp16"])
    t.add_argument("--tensorboard", action="store_true", help="log curves to <output>/logs with TensorBoard (the default whenever tensorboard is installed)")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--streaming", action="store_true",
                   help="read Parquet --data batch by batch from disk (data larger than memory)")
    t.add_argument("--column", default=None, help="with --streaming: the Parquet column to train on")
    t.add_argument("--positives", default=None, metavar="FILE.npy",
                   help="an (N, K) integer array, one row per record of --data in its order: the second view of "
                   "record i comes from one of its K listed records (mined positives, docs/methods.md)")
    t.add_argument("--on-bad-record", default=None, metavar="raise|skip",
                   help="a bad record (corrupt file, empty text, NaN series...): 'raise' stops with exit 2 naming it "
                        "(default), 'skip' leaves it out, counts it and lists it in <output>/skipped_records.json")

    e = sub.add_parser("embed", help="embed data with a pretrained model")
    e.add_argument("--model", required=True, help="a model folder or Hub repo id")
    e.add_argument("--data", required=True)
    e.add_argument("--output", required=True, help="FILE.npy")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--tensorboard", default=None, metavar="LOGDIR",
                   help="also write the embeddings (with image thumbnails) for TensorBoard's projector")

    v = sub.add_parser("evaluate", help="accuracy of a pretrained model on labelled data")
    v.add_argument("--model", required=True)
    v.add_argument("--data", required=True, help="class sub-folders, .npz with x/y, or a dataset with a label column")
    v.add_argument("--protocol", default="knn", choices=["knn", "linear", "finetune"])
    v.add_argument("--label-column", default=None)
    v.add_argument("--test-fraction", type=float, default=0.2)
    v.add_argument("--labels-per-class", type=int, default=None, help="use only k labelled training records per class")
    v.add_argument("--finetune-steps", type=int, default=300, help="optimiser steps for --protocol finetune")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--output", default=None, help="write the metrics as JSON here")
    v.add_argument("--on-bad-record", default="raise", metavar="raise|skip",
                   help="'skip' leaves bad records out together with their labels and counts them (default: raise)")

    u = sub.add_parser("push", help="upload a model folder to the Hugging Face Hub")
    u.add_argument("--model", required=True)
    u.add_argument("--repo-id", required=True)
    u.add_argument("--private", action="store_true")

    sub.add_parser("recipes", help="list the recipes")
    return p


def _version() -> str:
    from multissl import __version__

    return f"multissl {__version__}"


# ---------------------------------------------------------------------------------- commands
def cmd_demo(args: argparse.Namespace) -> int:
    from multissl.demo import run_demo

    run_demo(args.modality, args.output or f"runs/demo-{args.modality}", epochs=args.epochs, seeds=args.seeds,
             method=args.method, progress=not args.no_progress)
    return 0


def _read_config(path: Optional[str]) -> Dict[str, Any]:
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a JSON object of pretrain() options")
    return cfg


def _read_positives(path: str) -> Any:
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such positives file")
    try:  # no pickles: a .npy of plain integers
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ConfigError(f"{path}: not a NumPy .npy array of record indices ({str(e).splitlines()[0][:200]})") from None


def cmd_pretrain(args: argparse.Namespace) -> int:
    from multissl.adapters import get_adapter_class
    from multissl.api import pretrain
    from multissl.io import load_data
    from multissl.methods import get_method_class

    get_adapter_class(args.adapter)  # unknown names fail before any data is read
    if args.method:
        get_method_class(args.method)
    options = _read_config(args.config)
    if args.on_bad_record is not None:
        options["on_bad_record"] = args.on_bad_record
    check_on_bad_record(options.get("on_bad_record", "raise"))  # before any data is read
    if args.streaming:  # the files themselves: the stream reads them batch by batch
        data = args.data
        stream = options.get("streaming") if isinstance(options.get("streaming"), dict) else {}
        options["streaming"] = {**stream, "column": args.column} if args.column else (stream or True)
    elif args.column:
        raise ConfigError("--column goes with --streaming")
    else:
        data = load_data(args.data)
    if args.positives:
        options["positives"] = _read_positives(args.positives)
    if args.mixed_precision:
        options["mixed_precision"] = args.mixed_precision
    if args.tensorboard:
        options["trackers"] = "tensorboard"
    # the config file fills in what the command line left out; a flag given explicitly wins
    flags = {"method": args.method, "epochs": args.epochs, "batch_size": args.batch_size, "encoder": args.encoder,
             "seed": args.seed, "output_dir": args.output, "resume": args.resume or None,
             "overwrite": args.overwrite or None, "progress": False if args.no_progress else None}
    options.update({k: v for k, v in flags.items() if v is not None})
    options.setdefault("seed", 0)
    options.setdefault("output_dir", "runs/pretrain")
    if "adapter" in options and options.pop("adapter") != args.adapter:
        raise ConfigError(f"{args.config}: 'adapter' is chosen with --adapter (got {args.adapter!r} there)")
    args.output = options["output_dir"]
    with _one_line_skip_warnings():
        model = pretrain(data, adapter=args.adapter, **options)
    from multissl.distributed import process_state

    if process_state().is_main_process:
        print(f"saved {model!r} to {Path(args.output) / 'final'}")
        skipped = model.config.get("training", {}).get("skipped_records")
        if skipped is not None:
            from multissl.api import SKIPPED_RECORDS_FILE

            print(f"skipped {skipped['count']} bad record(s); listed in {Path(args.output) / SKIPPED_RECORDS_FILE}")
    return 0


@contextlib.contextmanager
def _one_line_skip_warnings():
    """Skipped-record warnings as one ``multissl: warning: ...`` line on stderr (no source line)."""
    from multissl.bad_records import SkippedRecordsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", SkippedRecordsWarning)
        show = warnings.showwarning

        def one_line(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, SkippedRecordsWarning):
                print(f"multissl: warning: {message}", file=sys.stderr)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = one_line
        yield


def cmd_embed(args: argparse.Namespace) -> int:
    from multissl.io import load_data, save_npy_atomic
    from multissl.model import SSLModel

    if not args.output.endswith(".npy"):
        raise ConfigError(f"--output must end with .npy, got {args.output}")
    model = SSLModel.from_pretrained(args.model)
    prepared = model.prepare(load_data(args.data))
    z = model.embed_prepared(prepared, batch_size=args.batch_size)
    save_npy_atomic(z, args.output)
    print(f"wrote {z.shape[0]} x {z.shape[1]} embeddings to {args.output}")
    if args.tensorboard:
        from multissl.projector import write_projector

        import torch

        images = prepared if model.config.get("adapter") == "image" and torch.is_tensor(prepared) else None
        write_projector(args.tensorboard, z, images=images)
        print(f"wrote the projector files to {args.tensorboard} (tensorboard --logdir {args.tensorboard})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from sklearn.model_selection import train_test_split

    from multissl.evaluation.few_labels import sample_per_class
    from multissl.evaluation import FinetuneConfig, finetune, knn_accuracy, linear_probe
    from multissl.io import load_labelled
    from multissl.model import SSLModel
    from multissl.trainer import embed_prepared

    from multissl.bad_records import BadRecordPolicy

    if not 0 < args.test_fraction < 1:
        raise ConfigError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    policy = BadRecordPolicy(args.on_bad_record)
    model = SSLModel.from_pretrained(args.model)
    prepared, y, classes = load_labelled(args.data, model.adapter, args.label_column, policy)
    if policy.skipped:
        print(f"multissl: warning: {policy.message()}", file=sys.stderr)
    idx = np.arange(len(y))
    try:
        train, test = train_test_split(idx, test_size=args.test_fraction, stratify=y, random_state=args.seed)
    except ValueError as e:
        raise DataError(f"{args.data}: cannot split into train/test ({e})") from None
    if args.labels_per_class:
        counts = np.bincount(y[train])
        if counts.min() < args.labels_per_class:
            raise DataError(f"{args.data}: a class has only {counts.min()} training records, "
                            f"fewer than --labels-per-class {args.labels_per_class}")
        train = sample_per_class(y, train, args.labels_per_class, args.seed)
    if args.protocol == "finetune":
        r = finetune(model.encoder, model.adapter, prepared[torch.as_tensor(train)], y[train],
                     prepared[torch.as_tensor(test)], y[test], embed_dim=model.embed_dim, num_classes=len(classes),
                     config=FinetuneConfig(seed=args.seed, steps=args.finetune_steps))
        acc = r["accuracy"]
    else:
        z = embed_prepared(model.encoder, model.adapter, prepared).numpy()
        if args.protocol == "knn":
            acc = knn_accuracy(z[train], y[train], z[test], y[test])
        else:
            acc = linear_probe(z[train], y[train], z[test], y[test])
    result = {"protocol": args.protocol, "accuracy": acc, "train": int(len(train)), "test": int(len(test)),
              "classes": classes, "model": str(args.model), "data": str(args.data),
              **({"skipped_records": policy.summary()} if policy.skip else {})}
    print(f"{args.protocol} accuracy: {acc:.4f}  ({len(train)} train / {len(test)} test, {len(classes)} classes)")
    if args.output:
        from multissl.evaluation.few_labels import write_json_atomic

        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(args.output), result)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from multissl.model import push_folder

    if not Path(args.model).is_dir():
        raise DataError(f"{args.model}: no such model folder")
    url = push_folder(args.model, args.repo_id, private=args.private)
    print(f"pushed to {url}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from multissl.recipes import available_recipes

    recipes = available_recipes()
    width = max((len(n) for n in recipes), default=10)
    for name, line in recipes.items():
        print(f"{name:<{width}}  {line}")
    print("\nrun one with: accelerate launch -m multissl.recipes.<name> --help")
    return 0


COMMANDS = {"demo": cmd_demo, "pretrain": cmd_pretrain, "embed": cmd_embed, "evaluate": cmd_evaluate,
            "push": cmd_push, "recipes": cmd_recipes}


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)  # argparse itself exits 2 on bad arguments
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        message = str(e)
        data = getattr(args, "data", None)
        if isinstance(e, DataError) and data and str(Path(data).name) not in message:
            message = f"{data}: {message}"  # "record 3: NaN ..." -> which file's record 3
        print(f"multissl: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("multissl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
