"""Video motion on Moving MNIST: future-frame prediction 10 -> 10 vs copy-last-frame, and few-label motion direction, SSL vs scratch.

Everything is generated from digit images you supply (``--data``: an MNIST-style folder such as
``../shared/data/mnist_test``, an IDX file or a ``.npy`` of uint8 (N, 28, 28)), with a fixed
seed; test sequences use digit images never seen in training (the last 20%).

1. **SSL pretraining** of a small 3D CNN (``c3d_small``) with ``--ssl-method`` (default
   ``future_frame``; ``frame_order``, ``rotation`` or any method name) on ``--num-sequences``
   unlabeled sequences.
2. **(a) Future-frame prediction**: an encoder + decoder (:class:`~multissl.methods.future_frame.FutureFrame`)
   predicts the next ``--future-frames`` frames from the first ``--context-frames``, trained
   for ``--predictor-steps`` steps on the same sequences, once from the SSL encoder and once
   from scratch (same decoder initialisation, data order, optimiser and steps). Reported on the
   test sequences with the per-frame MSE of the field (OpenSTL: squared error summed over the
   frame's pixels in [0, 1], averaged over sequences and predicted frames) next to two
   trivial predictors: copy-last-frame and an all-black frame.
3. **(b) Motion direction with few labels**: clips of ``--context-frames`` frames whose digits
   move the same way, labelled right / up / left / down (the generator's velocities); for
   ``--labels-per-class`` labels per class and ``--seeds`` label draws: raw pixels + logistic
   regression, the encoder from scratch (fine-tuned with the same crop augmentation, optimiser
   and steps), the SSL encoder frozen + logistic regression, and fine-tuned.

    python -m multissl.recipes.video_motion --data ../shared/data/mnist_test --output runs/video_motion
    accelerate launch recipes/video_motion.py --data ../shared/data/mnist_test --quick --output /tmp/vm

Writes ``<output>/metrics.json``, ``<output>/prediction_strip.png`` (context, true and
predicted frames of test sequences) and prints the same table. ``--quick`` is a seconds-long
smoke run at 16x16 pixels (numbers meaningless).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional


@dataclass
class VideoMotionArgs:
    data: str
    output: str = "runs/video_motion"
    num_sequences: int = 10000
    num_test: int = 1000
    frame_size: int = 64
    context_frames: int = 10
    future_frames: int = 10
    # measured best for both tasks (docs/recipes/video_motion.md): frame_order's order
    # verification is solved at once on bouncing digits and transfers little
    ssl_method: str = "future_frame"
    ssl_epochs: int = 5
    ssl_hparams: str = "{}"
    batch_size: int = 32
    encoder_width: int = 16
    predictor_steps: int = 1000
    predictor_lr: float = 2e-3
    motion_pool: int = 400
    motion_test: int = 1000
    labels_per_class: int = 10
    seeds: int = 3
    finetune_steps: int = 100
    finetune_lr: float = 1e-3
    finetune_batch_size: int = 32
    finetune_probe_steps: int = 0
    finetune_encoder_lr_ratio: float = 1.0
    ssl_model: str = ""
    ssl_init: str = ""
    motion_encoders: str = "ssl"
    pretrain_only: bool = False
    seed: int = 0
    progress: bool = True
    quick: bool = False


QUICK = dict(num_sequences=32, num_test=8, frame_size=16, ssl_epochs=1, batch_size=8, encoder_width=4,
             predictor_steps=3, motion_pool=16, motion_test=8, labels_per_class=2, seeds=2, finetune_steps=3)


def load_ssl_model(path: str, args: VideoMotionArgs, adapter: Any, option: str = "--ssl-model") -> Any:
    """The saved SSL model at ``path`` (``--ssl-model`` or ``--ssl-init``), checked against this
    run's settings (ConfigError)."""
    from multissl.errors import ConfigError
    from multissl.model import SSLModel

    model = SSLModel.from_pretrained(path)
    cfg = model.config
    spec = cfg.get("encoder") or {}
    found = {"adapter": cfg.get("adapter"), "method": cfg.get("method"), "encoder": spec.get("name"),
             "width": (spec.get("kwargs") or {}).get("width"), "frame_size": model.adapter.config.get("frame_size")}
    wanted = {"adapter": "video", "method": args.ssl_method, "encoder": "c3d_small", "width": args.encoder_width,
              "frame_size": adapter.config.get("frame_size")}
    wrong = [f"{k} {found[k]!r} (this run: {wanted[k]!r})" for k in wanted if found[k] != wanted[k]]
    if wrong:
        raise ConfigError(f"{option} {path} does not match this run: {'; '.join(wrong)}")
    return model


def parse_args(argv: Optional[List[str]] = None) -> VideoMotionArgs:
    d = VideoMotionArgs(data="")
    p = argparse.ArgumentParser(prog="video_motion", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="digit images: MNIST-style folder, IDX file or .npy (N, 28, 28)")
    p.add_argument("--output", default=d.output)
    p.add_argument("--num-sequences", type=int, default=d.num_sequences, help="unlabeled training sequences")
    p.add_argument("--num-test", type=int, default=d.num_test, help="test sequences for the prediction task")
    p.add_argument("--frame-size", type=int, default=d.frame_size, help="frames are resized to this (64 = standard)")
    p.add_argument("--context-frames", type=int, default=d.context_frames)
    p.add_argument("--future-frames", type=int, default=d.future_frames)
    p.add_argument("--ssl-method", default=d.ssl_method, help="future_frame (default), frame_order, rotation, ...")
    p.add_argument("--ssl-epochs", type=int, default=d.ssl_epochs)
    p.add_argument("--ssl-hparams", default=d.ssl_hparams, help='the SSL method\'s hyperparameters as JSON, e.g. '
                                                              '\'{"arrow": false}\'')
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--encoder-width", type=int, default=d.encoder_width, help="c3d_small base width")
    p.add_argument("--predictor-steps", type=int, default=d.predictor_steps)
    p.add_argument("--predictor-lr", type=float, default=d.predictor_lr)
    p.add_argument("--motion-pool", type=int, default=d.motion_pool, help="sequences the labelled draws come from")
    p.add_argument("--motion-test", type=int, default=d.motion_test)
    p.add_argument("--labels-per-class", type=int, default=d.labels_per_class)
    p.add_argument("--seeds", type=int, default=d.seeds, help="label draws")
    p.add_argument("--finetune-steps", type=int, default=d.finetune_steps)
    p.add_argument("--finetune-lr", type=float, default=d.finetune_lr)
    p.add_argument("--finetune-batch-size", type=int, default=d.finetune_batch_size)
    p.add_argument("--finetune-probe-steps", type=int, default=d.finetune_probe_steps,
                   help="LP-FT: head-only steps before fine-tuning, for the SSL and the scratch network alike")
    p.add_argument("--finetune-encoder-lr-ratio", type=float, default=d.finetune_encoder_lr_ratio,
                   help="encoder learning rate = --finetune-lr x this, for both fine-tuned networks")
    p.add_argument("--ssl-model", default=d.ssl_model,
                   help="a saved SSL model folder (a previous run's <output>/final) instead of pretraining; "
                        "it must match --frame-size, --encoder-width and --ssl-method")
    p.add_argument("--ssl-init", default=d.ssl_init,
                   help="a saved SSL model folder whose encoder starts the pretraining: --ssl-epochs more "
                        "epochs with a new optimiser, schedule and method head (a warm restart)")
    p.add_argument("--motion-encoders", default=d.motion_encoders,
                   help="encoders compared with scratch in (b): ssl (the --ssl-method encoder) and/or predictor "
                        "(the encoder of the SSL-initialised future-frame predictor, itself self-supervised)")
    p.add_argument("--pretrain-only", action="store_true",
                   help="stop once the SSL model is saved in <output>/final (e.g. pretrain on a GPU machine, "
                        "then evaluate anywhere with --ssl-model)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (overrides the sizes)")
    a = p.parse_args(argv)
    values = {k.replace("-", "_"): v for k, v in vars(a).items() if k not in ("no_progress",)}
    values["progress"] = not a.no_progress
    args = VideoMotionArgs(**values)
    if args.quick:
        args = VideoMotionArgs(**{**asdict(args), **QUICK})
    for key in ("num_sequences", "num_test", "frame_size", "context_frames", "future_frames", "ssl_epochs",
                "batch_size", "encoder_width", "predictor_steps", "motion_pool", "motion_test", "labels_per_class",
                "seeds", "finetune_steps", "finetune_batch_size"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be a positive integer, got {getattr(args, key)}")
    try:
        hp = json.loads(args.ssl_hparams)
    except json.JSONDecodeError as e:
        p.error(f"--ssl-hparams is not JSON ({e})")
    if not isinstance(hp, dict):
        p.error("--ssl-hparams must be a JSON object")
    encoders = [e.strip() for e in args.motion_encoders.split(",") if e.strip()]
    if not encoders or set(encoders) - {"ssl", "predictor"}:
        p.error(f"--motion-encoders takes ssl and/or predictor, got {args.motion_encoders!r}")
    if args.finetune_probe_steps < 0 or not args.finetune_encoder_lr_ratio >= 0:
        p.error("--finetune-probe-steps and --finetune-encoder-lr-ratio must be >= 0")
    for option, path in (("--ssl-model", args.ssl_model), ("--ssl-init", args.ssl_init)):
        if path and not (Path(path) / "config.json").is_file():
            p.error(f"{option} {path}: not a saved model folder (no config.json)")
    if args.ssl_model and args.ssl_init:
        p.error("--ssl-model (no pretraining) and --ssl-init (more pretraining) exclude each other")
    if args.ssl_model and args.pretrain_only:
        p.error("--ssl-model (no pretraining) and --pretrain-only exclude each other")
    if args.motion_pool < 4 * args.labels_per_class:
        p.error(f"--motion-pool {args.motion_pool} is too small for {args.labels_per_class} labels per class")
    return args


def _batches(n: int, batch_size: int, steps: int, seed: int) -> List[Any]:
    """The index batches of ``steps`` steps over ``n`` records, reshuffled each epoch (seeded)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out, perm, pos = [], torch.randperm(n, generator=g), 0
    bs = min(batch_size, n)
    for _ in range(steps):
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=g), 0
        out.append(perm[pos:pos + bs])
        pos += bs
    return out


def train_predictor(encoder: Any, adapter: Any, train: Any, args: VideoMotionArgs, device: Any = "cpu") -> Any:
    """:class:`FutureFrame` around ``encoder`` (copied), trained ``--predictor-steps`` steps on
    ``device``; the decoder's initialisation and the batches depend on ``--seed`` only."""
    import torch

    from multissl.adapters import take
    from multissl.adapters.base import to_device
    from multissl.methods import build_method

    torch.manual_seed(args.seed + 1)
    method = build_method("future_frame", copy.deepcopy(encoder), adapter.embed_dim(encoder),
                          context_frames=args.context_frames, future_frames=args.future_frames)
    method.bind_adapter(adapter)
    method.to(device)
    opt = torch.optim.AdamW(method.parameters(), lr=args.predictor_lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.predictor_lr, total_steps=args.predictor_steps,
                                                pct_start=0.1)
    method.train()
    history = []
    for step, idx in enumerate(_batches(len(train["video"]), args.batch_size, args.predictor_steps, args.seed)):
        out = method([adapter.eval_transform(to_device(take(train, idx), device))])
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == args.predictor_steps - 1:
            history.append({"step": step, "mse": float(out["mse"])})
    return method, history


def evaluate_predictor(method: Any, adapter: Any, test: Any, batch_size: int = 64) -> Dict[str, Any]:
    """Per-frame MSE / MAE of ``method`` on ``test`` and of the trivial predictors."""
    import torch

    from multissl.adapters import take
    from multissl.adapters.base import to_device
    from multissl.evaluation.video_prediction import copy_last_frame, mse_by_time, per_frame_mae

    method.eval()
    device = next(method.parameters()).device
    n = len(test["video"])
    sums = {"model": 0.0, "copy_last": 0.0, "black": 0.0, "model_mae": 0.0}
    by_time = 0.0
    with torch.no_grad():
        for s in range(0, n, batch_size):
            x = adapter.eval_transform(to_device(take(test, torch.arange(s, min(n, s + batch_size))), device))
            context, future, _ = method.split(x)
            pred = method.predict(context)
            b = len(x)
            t = mse_by_time(pred, future)
            by_time = by_time + t * b
            sums["model"] += float(t.mean()) * b
            sums["model_mae"] += float(per_frame_mae(pred, future)) * b
            last = copy_last_frame(method.to_pixels(context), future.shape[1])
            sums["copy_last"] += float(mse_by_time(last, future).mean()) * b
            sums["black"] += float(mse_by_time(torch.zeros_like(future), future).mean()) * b
    return {"mse": sums["model"] / n, "mae": sums["model_mae"] / n, "copy_last_mse": sums["copy_last"] / n,
            "black_frame_mse": sums["black"] / n, "mse_by_time": [float(v) for v in by_time / n]}


def save_strip(predictors: Dict[str, Any], adapter: Any, test: Any, path: Path, rows: int = 2) -> None:
    """PNG: for ``rows`` test sequences, the context frames, the true future and each predictor's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from multissl.adapters import take
    from multissl.adapters.base import to_device

    any_method = next(iter(predictors.values()))
    device = next(any_method.parameters()).device
    x = adapter.eval_transform(to_device(take(test, torch.arange(min(rows, len(test["video"])))), device))
    context, future, _ = any_method.split(x)
    lines = [("context", any_method.to_pixels(context).cpu()), ("true future", future.cpu())]
    with torch.no_grad():
        for name, m in predictors.items():
            m.eval()
            lines.append((f"predicted ({name})", m.predict(context).cpu()))
    n_cols = max(context.shape[2], future.shape[1])
    fig, axes = plt.subplots(len(x) * len(lines), n_cols, figsize=(n_cols * 0.9, len(x) * len(lines) * 0.95))
    axes = axes.reshape(len(x) * len(lines), n_cols)
    for i in range(len(x)):
        for j, (name, frames) in enumerate(lines):
            r = i * len(lines) + j
            for c in range(n_cols):
                ax = axes[r, c]
                ax.axis("off")
                if c < frames.shape[1]:
                    ax.imshow(frames[i, c].permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, 0].set_title(f"seq {i}: {name}", fontsize=7, loc="left")
    fig.tight_layout(pad=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)


def run_video_motion(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    import torch

    from multissl.adapters.video import VideoAdapter
    from multissl.adapters.video_moving_mnist import moving_mnist
    from multissl.distributed import process_state
    from multissl.errors import ConfigError
    from multissl.evaluation.few_labels import format_table, write_json_atomic
    from multissl.methods import get_method_class
    from multissl.model import SSLModel
    from multissl.recipes._video import (classification_adapter, load_digits, motion_few_labels, motion_sets,
                                         pretext_accuracy, pretrain_encoder, split_digits)

    args = parse_args(argv)
    get_method_class(args.ssl_method).resolve_hparams(json.loads(args.ssl_hparams)) if hasattr(
        get_method_class(args.ssl_method), "resolve_hparams") else None  # bad names fail before any work
    t0 = time.perf_counter()
    state = process_state()
    digits = load_digits(args.data)
    train_digits, test_digits = split_digits(digits)
    total = args.context_frames + args.future_frames
    train_mm = moving_mnist(train_digits, num_sequences=args.num_sequences, num_frames=total, seed=args.seed)
    test_mm = moving_mnist(test_digits, num_sequences=args.num_test, num_frames=total, seed=args.seed + 1)
    if state.is_main_process:
        print(f"video_motion: {args.num_sequences} training and {args.num_test} test Moving MNIST sequences of "
              f"{total} frames at {args.frame_size}x{args.frame_size} ({len(train_digits)} / {len(test_digits)} "
              f"digit images); SSL: {args.ssl_method}")

    # one adapter fixes the frame size and the normalisation for every stage
    adapter = VideoAdapter(frame_size=args.frame_size, clip_length=args.context_frames, preset="light")
    train = adapter.prepare(train_mm.videos)
    test = adapter.prepare(test_mm.videos)
    adapter.fit(train)
    ssl_defaults = get_method_class(args.ssl_method).adapter_defaults.get("video", {})
    ssl_adapter = VideoAdapter(**{**adapter.config, **ssl_defaults})
    if args.ssl_method == "future_frame":
        ssl_adapter.config["clip_length"] = total
    out = Path(args.output)
    init = load_ssl_model(args.ssl_init, args, adapter, "--ssl-init") if args.ssl_init else None
    if args.ssl_model:  # a previous run's encoder: skip the pretraining
        loaded = load_ssl_model(args.ssl_model, args, adapter)
        method, ssl_encoder, t_ssl = None, loaded.encoder, 0.0
        history = loaded.config.get("history") or []
        hparams = loaded.config.get("method_hparams") or {}
    else:
        method, history, t_ssl, training = pretrain_encoder(args.ssl_method, ssl_adapter, train, args.encoder_width,
                                                  args.ssl_epochs, args.batch_size, args.seed, args.progress,
                                                  method_kwargs=json.loads(args.ssl_hparams),
                                                  init=init.encoder if init is not None else None)
        ssl_encoder, hparams = method.encoder, method.hparams()
    if not state.is_main_process:
        state.wait_for_everyone()
        return {}
    pretext = {"method": args.ssl_method, "final_train_loss": history[-1]["loss"] if history else None,
               "seconds": round(t_ssl, 1), "method_hparams": hparams, "loaded_from": args.ssl_model or None,
               "initialised_from": args.ssl_init or None,
               "initial_history": (init.config.get("history") or []) if init is not None else None}
    if method is not None and args.ssl_method in ("frame_order", "rotation"):  # accuracy on test clips
        pretext["heldout_accuracy"] = pretext_accuracy(method, ssl_adapter, test)
        print(f"pretext ({args.ssl_method}) accuracy on {args.num_test} held-out clips: "
              f"{pretext['heldout_accuracy']:.3f}")
    if method is not None:
        # saved before the downstream stages: the hour of pretraining is reusable (--ssl-model)
        SSLModel(adapter, ssl_encoder, {"adapter": "video", "method": args.ssl_method, "method_hparams": hparams,
                                        "encoder": {"name": "c3d_small", "kwargs": {"width": args.encoder_width}},
                                        "embed_dim": adapter.embed_dim(ssl_encoder), "training": training,
                                        "history": history, "initialised_from": args.ssl_init or None}
                 ).save_pretrained(out / "final")
        print(f"SSL ({args.ssl_method}) done in {t_ssl:.0f}s: {history[-1] if history else {}}; "
              f"model in {out / 'final'}")
        if args.pretrain_only:
            print("stopping here (--pretrain-only); evaluate later with --ssl-model")
            state.wait_for_everyone()
            return {"pretext": pretext, "pretext_history": history}
    else:
        print(f"SSL ({args.ssl_method}) encoder loaded from {args.ssl_model}")

    # (a) future-frame prediction, SSL-initialised vs from scratch, same budget
    pred_adapter = VideoAdapter(**{**adapter.config, "clip_length": total, "preset": "none",
                                   "temporal_jitter": False})
    torch.manual_seed(args.seed)
    scratch_encoder = adapter.build_encoder("c3d_small", width=args.encoder_width)
    t1 = time.perf_counter()
    predictors, prediction = {}, {}
    for name, enc in (("scratch", scratch_encoder), ("ssl", ssl_encoder)):
        m, curve = train_predictor(enc, pred_adapter, train, args, state.device)
        predictors[name] = m
        prediction[name] = {**evaluate_predictor(m, pred_adapter, test), "train_curve": curve}
        print(f"predictor ({name}): test MSE/frame {prediction[name]['mse']:.2f}")
    copy_last = prediction["ssl"]["copy_last_mse"]
    prediction.update({
        "copy_last_mse": copy_last, "black_frame_mse": prediction["ssl"]["black_frame_mse"],
        "ssl_reduction_vs_copy_last": 1 - prediction["ssl"]["mse"] / copy_last,
        "scratch_reduction_vs_copy_last": 1 - prediction["scratch"]["mse"] / copy_last,
        "ssl_minus_scratch_mse": prediction["ssl"]["mse"] - prediction["scratch"]["mse"],
        "steps": args.predictor_steps, "seconds": round(time.perf_counter() - t1, 1),
        "pixels_per_frame": args.frame_size ** 2,
    })

    # (b) motion direction with few labels
    t2 = time.perf_counter()
    sets = motion_sets(digits, args.motion_pool, args.motion_test, args.context_frames, args.seed)
    cls_adapter = classification_adapter(adapter, args.context_frames)
    if min(sets["labels"][sets["pool"]].tolist().count(c) for c in range(4)) < args.labels_per_class:
        raise ConfigError(f"--motion-pool {args.motion_pool}: some direction has fewer than "
                          f"{args.labels_per_class} sequences; raise --motion-pool")
    motion_by_encoder = {}
    for name in [e.strip() for e in args.motion_encoders.split(",") if e.strip()]:
        enc = ssl_encoder if name == "ssl" else predictors["ssl"].encoder
        motion_by_encoder[name] = motion_few_labels(enc, cls_adapter, sets, args.encoder_width,
                                                    [args.labels_per_class], args.seeds, args.finetune_steps,
                                                    args.finetune_lr, args.finetune_batch_size,
                                                    probe_steps=args.finetune_probe_steps,
                                                    encoder_lr_ratio=args.finetune_encoder_lr_ratio)
    motion = next(iter(motion_by_encoder.values()))
    motion["seconds"] = round(time.perf_counter() - t2, 1)

    save_strip(predictors, pred_adapter, test, out / "prediction_strip.png")
    metrics = {"recipe": "video_motion", "args": asdict(args), "pretext": pretext, "pretext_history": history,
               "prediction": prediction, "motion": motion, "motion_by_encoder": motion_by_encoder,
               "directions": ["right", "up", "left", "down"],
               "total_seconds": round(time.perf_counter() - t0, 1)}
    write_json_atomic(out / "metrics.json", metrics)
    k = str(args.labels_per_class)
    print()
    print(f"(a) future-frame prediction {args.context_frames} -> {args.future_frames}, per-frame MSE "
          f"(sum over {args.frame_size}x{args.frame_size} pixels in [0, 1]), {args.num_test} test sequences")
    for label, value in (("copy last frame", copy_last), ("all-black frame", prediction["black_frame_mse"]),
                         ("predictor from scratch", prediction["scratch"]["mse"]),
                         (f"predictor from {args.ssl_method}", prediction["ssl"]["mse"])):
        print(f"  {label:<38}{value:>9.2f}")
    print(f"  reduction vs copy-last: SSL {prediction['ssl_reduction_vs_copy_last']:.1%}, "
          f"scratch {prediction['scratch_reduction_vs_copy_last']:.1%}")
    for name, mo in motion_by_encoder.items():
        which = args.ssl_method if name == "ssl" else f"the future-frame predictor's encoder ({args.ssl_method} init)"
        print(f"\n(b) motion direction (4 classes), {args.labels_per_class} labels/class, {mo['num_test']} test "
              f"clips; SSL = {which}")
        print(format_table(mo["results"], args.seeds))
        p = mo["paired"][k]
        print(f"SSL fine-tuned minus from scratch, same labelled draws: {p['mean']:+.3f} "
              f"(better in {p['wins']}/{len(p['differences'])})")
    saved = "" if args.ssl_model else f", model in {out / 'final'}"
    print(f"\nwrote {out / 'metrics.json'}, {out / 'prediction_strip.png'}{saved} ({metrics['total_seconds']:.0f}s)")
    state.wait_for_everyone()
    return metrics


def main(argv: Optional[List[str]] = None) -> int:
    from multissl.errors import exit_status

    return exit_status("video_motion", lambda: run_video_motion(argv))


if __name__ == "__main__":
    sys.exit(main())
