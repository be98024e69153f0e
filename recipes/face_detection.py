"""Face detection with few labelled scenes: an SSL-pretrained backbone vs the same detector from scratch (AP@0.5 on unseen people).

AT&T/ORL faces (40 people) are pasted at random positions and scales onto natural images
and procedural textures, so every box is known (``recipes/_face_scenes.py``). The people are
split: ``--train-people`` of them (default 30) appear in the unlabeled pretraining scenes and
in the ``--labelled-scenes`` (default 50) detection training scenes, the others only in the
test scenes (which also use backgrounds never seen in training).

1. SSL: ``multissl.pretrain`` (image adapter, SimCLR by default) on random ``--crop-size``
   windows of unlabeled scenes, with a ResNet-18 trunk (``--encoder-width``, the standard
   stride-2 stem + max-pool at every size so that the trunk is the same for crops and scenes).
2. Detection: torchvision's FCOS (Tian et al. 2019) on that trunk. A feature pyramid network
   merges layer2, layer3 and layer4 (strides 8, 16, 32) top-down into ONE output level at
   stride 8: faces span only 24-56 px, about one octave, so one level (a 16x16 grid on a
   128 px scene, centre sampling 1.5 cells) covers them, while the top-down path still brings
   layer3/layer4 -- where the SSL loss trains the trunk hardest -- into that level. The same
   detector with a trunk from scratch (same initial FPN/head, augmentations, steps, data order
   and seed) is the baseline.
3. AP@0.5 (VOC all-point interpolation, ``multissl.evaluation.detection_ap``) on the test scenes.
4. Identification of the unseen people with one enrolled image per person: nearest neighbour
   (cosine) on face crops, for raw pixels, the untrained encoder, the SSL encoder and the two
   trained detector trunks; every image of a person takes a turn as the enrolled one.

    accelerate launch recipes/face_detection.py --faces ../shared/data/att_orl_faces \
        --backgrounds ../shared/data/cifar10_test_subset_jpg --output runs/face_detection
    python -m multissl.recipes.face_detection --faces ../shared/data/att_orl_faces --output runs/fd

Writes ``<output>/metrics.json``, ``<output>/detections.png`` (true boxes green, SSL detector
red, from-scratch detector blue, scores >= 0.5) and the SSL model in ``<output>/ssl/final``.
"""
from __future__ import annotations

import argparse
import copy
import functools
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used, so that --help answers at once
    import torch
    from torch import nn


@dataclass
class Args:
    faces: str
    backgrounds: Optional[str] = None
    output: str = "runs/face_detection"
    scene_size: int = 128
    train_people: int = 30
    unlabeled_scenes: int = 400
    labelled_scenes: int = 50
    test_scenes: int = 100
    max_faces: int = 4
    crop_size: int = 64
    crops_per_scene: int = 4
    method: str = "simclr"
    encoder: str = "resnet18"
    encoder_width: float = 0.5
    ssl_epochs: int = 60
    ssl_batch_size: int = 128
    fpn_channels: int = 64
    head_convs: int = 2
    det_steps: int = 300
    det_seeds: int = 1
    det_batch_size: int = 8
    det_lr: float = 1e-3
    score_threshold: float = 0.5
    seed: int = 0
    progress: bool = True


def parse_args(argv: Optional[List[str]] = None) -> Args:
    d = Args(faces="")
    p = argparse.ArgumentParser(prog="face_detection", description=__doc__.splitlines()[0])
    p.add_argument("--faces", required=True, help="the AT&T/ORL faces folder (s1/1.pgm ... s40/10.pgm)")
    p.add_argument("--backgrounds", default=None,
                   help="a folder of natural images for backgrounds (e.g. CIFAR-10 JPEGs); default: textures only")
    p.add_argument("--output", default=d.output)
    p.add_argument("--scene-size", type=int, default=d.scene_size)
    p.add_argument("--train-people", type=int, default=d.train_people,
                   help="people in the training scenes; the others appear only in the test scenes")
    p.add_argument("--unlabeled-scenes", type=int, default=d.unlabeled_scenes, help="scenes for SSL (no boxes used)")
    p.add_argument("--labelled-scenes", type=int, default=d.labelled_scenes, help="scenes with boxes to train the detector")
    p.add_argument("--test-scenes", type=int, default=d.test_scenes)
    p.add_argument("--max-faces", type=int, default=d.max_faces, help="faces per scene: 1 to this")
    p.add_argument("--crop-size", type=int, default=d.crop_size, help="SSL trains on random windows of this size")
    p.add_argument("--crops-per-scene", type=int, default=d.crops_per_scene)
    p.add_argument("--method", default=d.method, help="a Siamese SSL method (simclr, byol, vicreg, ...)")
    p.add_argument("--encoder", default=d.encoder, help="resnet18 / resnet34 / resnet50")
    p.add_argument("--encoder-width", type=float, default=d.encoder_width, help="ResNet channel multiplier")
    p.add_argument("--ssl-epochs", type=int, default=d.ssl_epochs)
    p.add_argument("--ssl-batch-size", type=int, default=d.ssl_batch_size)
    p.add_argument("--fpn-channels", type=int, default=d.fpn_channels)
    p.add_argument("--head-convs", type=int, default=d.head_convs, help="conv layers in each FCOS head branch")
    p.add_argument("--det-steps", type=int, default=d.det_steps, help="detector optimiser steps (both detectors)")
    p.add_argument("--det-seeds", type=int, default=d.det_seeds,
                   help="train both detectors this many times (head init, scratch trunk init, data order)")
    p.add_argument("--det-batch-size", type=int, default=d.det_batch_size)
    p.add_argument("--det-lr", type=float, default=d.det_lr, help="AdamW lr of the detector (trunk, FPN and head)")
    p.add_argument("--score-threshold", type=float, default=d.score_threshold,
                   help="score for the precision/recall figures and the PNG (AP uses every detection)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    for name in ("scene_size", "unlabeled_scenes", "labelled_scenes", "test_scenes", "max_faces", "crop_size",
                 "crops_per_scene", "ssl_epochs", "fpn_channels", "head_convs", "det_steps", "det_seeds"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(a, name)}")
    if a.ssl_batch_size < 2 or a.det_batch_size < 2:
        p.error("--ssl-batch-size and --det-batch-size must be at least 2")
    if a.train_people < 1:
        p.error(f"--train-people must be at least 1, got {a.train_people}")
    if a.fpn_channels % 32:
        p.error(f"--fpn-channels must be a multiple of 32 (the FCOS head's GroupNorm has 32 groups), got {a.fpn_channels}")
    if a.crop_size > a.scene_size:
        p.error(f"--crop-size {a.crop_size} is larger than --scene-size {a.scene_size}")
    if a.scene_size < 32:
        p.error(f"--scene-size must be at least 32 (the trunk has stride 32), got {a.scene_size}")
    kwargs = {k: v for k, v in vars(a).items() if k != "no_progress"}
    return Args(**kwargs, progress=not a.no_progress)


# ---- the detector -------------------------------------------------------------------------------
def build_detector(trunk: "nn.Module", mean: float, std: float, args: Args, seed: int) -> "nn.Module":
    """FCOS on a ResNet trunk: FPN (layer2-4 -> one stride-8 level) + an FCOS head; one class (face).

    ``seed`` initialises the FPN and the head, so the SSL and from-scratch detectors start from
    the same head weights and differ only in the trunk.
    """
    import torch
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    torch.manual_seed(seed)
    backbone = _trunk_pyramid_class()(trunk, args.fpn_channels)
    head = FCOSHead(args.fpn_channels, num_anchors=1, num_classes=2, num_convs=args.head_convs)
    # one level: the anchor size is its stride, which FCOS uses for centre sampling; with a single
    # level every face is assigned to it (no per-level size ranges)
    anchors = AnchorGenerator(sizes=((PYRAMID_STRIDE,),), aspect_ratios=((1.0,),))
    return FCOS(backbone, num_classes=2, min_size=args.scene_size, max_size=args.scene_size,
                image_mean=[mean], image_std=[std], anchor_generator=anchors, head=head,
                score_thresh=0.05, nms_thresh=0.5, detections_per_img=20, topk_candidates=200)


#: the stride of the single feature level the detector uses (layer2 of a ResNet)
PYRAMID_STRIDE = 8


@functools.lru_cache(maxsize=None)
def _trunk_pyramid_class() -> type:
    """The backbone module class, defined on first use so that ``--help`` does not import torch."""
    from torch import nn
    from torchvision.ops import FeaturePyramidNetwork

    def out_width(layer: nn.Module) -> int:  # the last BatchNorm of a stage sees its output channels
        return [m for m in layer.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features

    class TrunkWithPyramid(nn.Module):
        """The trunk's layer2/3/4 maps merged top-down by an FPN; returns only the stride-8 level."""

        def __init__(self, trunk: nn.Module, channels: int) -> None:
            super().__init__()
            self.trunk = trunk
            self.fpn = FeaturePyramidNetwork([out_width(trunk.layer2), out_width(trunk.layer3),
                                              out_width(trunk.layer4)], channels)
            self.out_channels = channels

        def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
            t = self.trunk
            c3 = t.layer2(t.layer1(t.maxpool(t.relu(t.bn1(t.conv1(x))))))
            c4 = t.layer3(c3)
            c5 = t.layer4(c4)
            return {"p3": self.fpn({"c3": c3, "c4": c4, "c5": c5})["c3"]}

    return TrunkWithPyramid


def _batch(images: np.ndarray, boxes: Sequence[np.ndarray], idx: np.ndarray, g: np.random.Generator,
           device: "torch.device") -> tuple:
    """Images in [0, 1] and FCOS targets for scenes ``idx``, with the detector's augmentation:
    horizontal flip (p = 0.5) and a mild brightness/contrast change, drawn from ``g``."""
    import torch

    size = images.shape[-1]
    xs, targets = [], []
    for i in idx:
        x = images[i].astype(np.float32) / 255.0
        b = boxes[i].copy()
        if g.random() < 0.5:
            x = x[:, :, ::-1]
            b[:, [0, 2]] = size - b[:, [2, 0]]
        c, off = g.uniform(0.8, 1.2), g.uniform(-0.08, 0.08)
        x = np.clip((x - x.mean()) * c + x.mean() + off, 0.0, 1.0)
        xs.append(torch.from_numpy(np.ascontiguousarray(x)).to(device))
        targets.append({"boxes": torch.from_numpy(b).to(device),
                        "labels": torch.ones(len(b), dtype=torch.int64, device=device)})
    return xs, targets


def train_detector(detector: "nn.Module", images: np.ndarray, boxes: Sequence[np.ndarray], args: Args,
                   name: str, device: "torch.device", seed: int) -> List[Dict[str, float]]:
    """AdamW with 5% linear warm-up and cosine decay for ``args.det_steps`` steps; returns the loss log.
    ``seed`` draws the data order and augmentations (the same for the SSL and from-scratch detector)."""
    import math

    import torch

    detector.to(device).train()
    opt = torch.optim.AdamW(detector.parameters(), lr=args.det_lr, weight_decay=1e-4)
    warmup = max(1, args.det_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, args.det_steps - warmup))))
    g = np.random.default_rng(seed)
    order: List[int] = []
    log = []
    t0 = time.perf_counter()
    every = max(1, args.det_steps // 10)
    for step in range(args.det_steps):
        if len(order) < args.det_batch_size:
            order += g.permutation(len(images)).tolist()
        idx, order = np.asarray(order[:args.det_batch_size]), order[args.det_batch_size:]
        xs, targets = _batch(images, boxes, idx, g, device)
        losses = detector(xs, targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(detector.parameters(), 10.0)
        opt.step()
        sched.step()
        entry = {"step": step + 1, "loss": loss.item(), **{k: v.item() for k, v in losses.items()}}
        log.append(entry)
        if args.progress and ((step + 1) % every == 0 or step == 0):
            print(f"  detector ({name}) step {step + 1}/{args.det_steps}: loss {entry['loss']:.3f} "
                  f"(cls {entry['classification']:.3f}, box {entry['bbox_regression']:.3f}, "
                  f"ctr {entry['bbox_ctrness']:.3f}), {time.perf_counter() - t0:.0f}s", flush=True)
    return log


def detect(detector: "nn.Module", images: np.ndarray, device: "torch.device", batch_size: int = 16) -> List[Dict[str, np.ndarray]]:
    import torch

    detector.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            xs = [torch.from_numpy(x.astype(np.float32) / 255.0).to(device) for x in images[s:s + batch_size]]
            for d in detector(xs):
                out.append({"boxes": d["boxes"].cpu().numpy(), "scores": d["scores"].cpu().numpy()})
    return out


def detection_metrics(preds: List[Dict[str, np.ndarray]], truths: Sequence[np.ndarray], score_threshold: float) -> Dict[str, Any]:
    """AP@0.5 (all detections) and precision/recall of the detections scoring >= ``score_threshold``."""
    from multissl.evaluation.detection_ap import average_precision

    r = average_precision([p["boxes"] for p in preds], [p["scores"] for p in preds], truths, iou_threshold=0.5)
    kept = [p["scores"] >= score_threshold for p in preds]
    at = average_precision([p["boxes"][k] for p, k in zip(preds, kept)], [p["scores"][k] for p, k in zip(preds, kept)],
                           truths, iou_threshold=0.5)
    tp, n_pred = at["true_positives"], at["num_pred"]
    return {"ap50": r["ap"], "num_faces": r["num_true"], "num_detections": r["num_pred"],
            f"precision_at_{score_threshold}": tp / n_pred if n_pred else 0.0,
            f"recall_at_{score_threshold}": tp / r["num_true"] if r["num_true"] else float("nan")}


# ---- identification ------------------------------------------------------------------------------
def identification_accuracy(features: np.ndarray, people: np.ndarray, shot: np.ndarray) -> Dict[str, float]:
    """1-shot nearest-neighbour identification (cosine): for each image number ``r``, every person's
    image ``r`` is enrolled and all their other images are queries; mean and min over ``r``."""
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    accs = []
    for r in np.unique(shot):
        gallery = np.flatnonzero(shot == r)
        queries = np.flatnonzero(shot != r)
        sims = f[queries] @ f[gallery].T
        accs.append(float(np.mean(people[gallery][sims.argmax(1)] == people[queries])))
    return {"accuracy": float(np.mean(accs)), "min_accuracy": float(np.min(accs)), "rounds": len(accs),
            "chance": 1.0 / len(np.unique(people))}


def face_crops(face_images: np.ndarray, size: int) -> np.ndarray:
    """Whole ORL images resized to ``size`` x ``size`` (uint8 (N, 1, size, size)), the input the encoders see."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR))[None] for f in face_images])


def raw_pixel_features(face_images: np.ndarray) -> np.ndarray:
    """Raw pixels at full resolution, each image standardised (zero mean, unit std) so that
    lighting offsets do not dominate the distance: the practitioner's pixel baseline."""
    x = face_images.reshape(len(face_images), -1).astype(np.float64)
    x = x - x.mean(1, keepdims=True)
    return x / np.maximum(x.std(1, keepdims=True), 1e-6)


# ---- outputs ---------------------------------------------------------------------------------------
def plot_detections(images: np.ndarray, truths: Sequence[np.ndarray], rows: Dict[str, List[Dict[str, np.ndarray]]],
                    path: Path, score_threshold: float, n: int = 6) -> None:
    """A grid: one row per detector, ``n`` test scenes; true boxes green, predictions (score >= threshold) coloured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = min(n, len(images))
    colours = {0: "red", 1: "dodgerblue"}
    fig, axes = plt.subplots(len(rows), n, figsize=(2.2 * n, 2.4 * len(rows)), squeeze=False)
    for r, (name, preds) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(images[c, 0], cmap="gray", vmin=0, vmax=255)
            for b in truths[c]:
                ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, color="lime", lw=1.5))
            keep = preds[c]["scores"] >= score_threshold
            for b, s in zip(preds[c]["boxes"][keep], preds[c]["scores"][keep]):
                ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, color=colours.get(r, "red"),
                                       lw=1.2, ls="--"))
                ax.text(b[0], b[1] - 1, f"{s:.2f}", color=colours.get(r, "red"), fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(f"test scenes (unseen people): true boxes green, detections >= {score_threshold} dashed", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


# ---- the recipe ------------------------------------------------------------------------------------
def run(args: Args) -> Dict[str, Any]:
    import torch

    from multissl.api import pretrain
    from multissl.distributed import process_state
    from multissl.errors import DataError
    from multissl.evaluation.few_labels import write_json_atomic
    from multissl.recipes._face_scenes import compose_scenes, load_backgrounds, load_orl_faces, random_crops

    t0 = time.perf_counter()
    state = process_state()
    faces = load_orl_faces(args.faces)
    backgrounds = load_backgrounds(args.backgrounds) if args.backgrounds else None
    everyone = np.unique(faces.people)
    if args.train_people >= len(everyone):
        raise DataError(f"{args.faces}: {len(everyone)} people, so --train-people must be below that "
                        f"(the rest are the unseen test people); got {args.train_people}")
    people = np.random.default_rng(args.seed).permutation(everyone)
    train_people, test_people = np.sort(people[:args.train_people]), np.sort(people[args.train_people:])
    if backgrounds is not None and len(backgrounds) >= 5:
        # test scenes get backgrounds never seen in training too
        cut = int(len(backgrounds) * 0.8)
        bg_train, bg_test = backgrounds[:cut], backgrounds[cut:]
    else:
        bg_train = bg_test = backgrounds
    scene = dict(size=args.scene_size, max_faces=args.max_faces,
                 face_height=(max(4, round(args.scene_size * 24 / 128)), max(4, round(args.scene_size * 56 / 128))))
    seed = args.seed * 1000
    unlabeled = compose_scenes(faces, train_people, args.unlabeled_scenes, seed + 1, backgrounds=bg_train, **scene)
    labelled = compose_scenes(faces, train_people, args.labelled_scenes, seed + 2, backgrounds=bg_train, **scene)
    test = compose_scenes(faces, test_people, args.test_scenes, seed + 3, backgrounds=bg_test, **scene)
    crops = random_crops(unlabeled.images, args.crop_size, args.crops_per_scene, seed + 4)
    if state.is_main_process:
        print(f"face_detection: {len(faces.images)} faces of {len(everyone)} people; {len(train_people)} people for "
              f"training, {len(test_people)} unseen ({', '.join(f's{p}' for p in test_people)}) for testing")
        print(f"scenes {args.scene_size}px: {len(unlabeled)} unlabeled ({len(crops)} crops of {args.crop_size}px for "
              f"SSL), {len(labelled)} labelled ({sum(map(len, labelled.boxes))} faces), {len(test)} test "
              f"({sum(map(len, test.boxes))} faces)", flush=True)

    # 1. SSL on unlabeled crops; the standard stem everywhere, so the trunk is the same one the detector uses
    encoder_kwargs = {"width": args.encoder_width, "small_stem": False}
    t_ssl = time.perf_counter()
    model = pretrain(crops, adapter="image", method=args.method, epochs=args.ssl_epochs, batch_size=args.ssl_batch_size,
                     encoder=args.encoder, encoder_kwargs=encoder_kwargs, seed=args.seed,
                     adapter_config={"image_size": args.crop_size}, output_dir=str(Path(args.output) / "ssl"),
                     progress=args.progress, overwrite=True)
    t_ssl = time.perf_counter() - t_ssl
    if not state.is_main_process:  # detection on 50 scenes is small; the main process does it alone
        state.wait_for_everyone()
        return {}
    device = state.device
    adapter = model.adapter
    mean, std = float(adapter.config["mean"][0]), float(adapter.config["std"][0])
    history = model.config.get("history", [])
    print(f"SSL ({args.method}) done in {t_ssl:.0f}s, final loss {history[-1]['loss']:.3f}" if history else
          f"SSL ({args.method}) done in {t_ssl:.0f}s", flush=True)

    def fresh_trunk(run: int = 0) -> "nn.Module":
        torch.manual_seed(args.seed + run)
        return adapter.build_encoder(args.encoder, **encoder_kwargs)

    untrained = fresh_trunk()
    ssl_trunk = model.encoder

    # 2. the two detectors, identical but for the trunk's starting weights; per run a new head
    #    init, scratch trunk init and data order, shared by both
    runs: Dict[str, List[Dict[str, Any]]] = {"ssl": [], "scratch": []}
    predictions: Dict[str, List[Dict[str, np.ndarray]]] = {}
    trunks: Dict[str, "nn.Module"] = {}
    logs: Dict[str, Any] = {}
    for run_i in range(args.det_seeds):
        for name, trunk in (("ssl", copy.deepcopy(ssl_trunk)), ("scratch", fresh_trunk(run_i))):
            t = time.perf_counter()
            detector = build_detector(trunk, mean, std, args, seed=args.seed + 1 + run_i)
            print(f"training the detector with the {name} trunk on {len(labelled)} labelled scenes, "
                  f"{args.det_steps} steps of {args.det_batch_size} (run {run_i + 1}/{args.det_seeds})", flush=True)
            log = train_detector(detector, labelled.images, labelled.boxes, args, name, device, seed=args.seed + 7 + run_i)
            preds = detect(detector, test.images, device)
            runs[name].append({**detection_metrics(preds, test.boxes, args.score_threshold),
                               "train_seconds": round(time.perf_counter() - t, 1), "final_loss": log[-1]["loss"]})
            print(f"  {name}: AP@0.5 on unseen people {runs[name][-1]['ap50']:.3f}", flush=True)
            if run_i == 0:  # the figure and the identification use the first run's detectors
                predictions[name] = preds
                logs[name] = log[:: max(1, len(log) // 50)] + [log[-1]]
                trunks[f"{name}_detector_trunk"] = detector.backbone.trunk
    results = {name: {**{k: float(np.mean([r[k] for r in rs])) for k in rs[0]},
                      "ap50_std": float(np.std([r["ap50"] for r in rs])), "runs": rs} for name, rs in runs.items()}
    diffs = [s["ap50"] - c["ap50"] for s, c in zip(runs["ssl"], runs["scratch"])]

    # 3. identification of the unseen people, one enrolled image per person
    test_faces = np.flatnonzero(np.isin(faces.people, test_people))
    shot = np.zeros(len(faces.people), dtype=np.int64)
    for p in test_people:  # the image number within each person
        idx = np.flatnonzero(faces.people == p)
        shot[idx] = np.arange(len(idx))
    crops_in = torch.from_numpy(face_crops(faces.images[test_faces], args.crop_size))
    from multissl.trainer import embed_prepared

    feats = {"raw_pixels": raw_pixel_features(faces.images[test_faces])}
    for name, enc in (("untrained_encoder", untrained), ("ssl_encoder", ssl_trunk), *trunks.items()):
        feats[name] = embed_prepared(enc.to(device), adapter, crops_in, device=device).numpy()
    ident = {name: identification_accuracy(f, faces.people[test_faces], shot[test_faces]) for name, f in feats.items()}

    out = Path(args.output)
    metrics = {"recipe": "face_detection", "args": asdict(args), "faces": str(args.faces),
               "backgrounds": args.backgrounds, "train_people": train_people.tolist(),
               "test_people": test_people.tolist(), "num_crops": int(len(crops)),
               "num_faces": {"labelled": int(sum(map(len, labelled.boxes))), "test": int(sum(map(len, test.boxes)))},
               "detection": results, "ssl_minus_scratch_ap50": float(np.mean(diffs)),
               "ssl_minus_scratch_ap50_runs": diffs, "ssl_wins": int(sum(d > 0 for d in diffs)),
               "identification": ident, "ssl_seconds": round(t_ssl, 1), "ssl_history": history,
               "detector_loss": logs, "total_seconds": round(time.perf_counter() - t0, 1)}
    write_json_atomic(out / "metrics.json", metrics)
    plot_detections(test.images, test.boxes, {"SSL trunk": predictions["ssl"], "from scratch": predictions["scratch"]},
                    out / "detections.png", args.score_threshold)
    thr = args.score_threshold
    print()
    print(f"{'detector (test: unseen people)':<34}{'AP@0.5':>8}{'+-std':>8}{f'P@{thr}':>8}{f'R@{thr}':>8}"
          f"   (mean of {args.det_seeds} run(s))")
    for name in ("ssl", "scratch"):
        r = results[name]
        print(f"{name + ' trunk':<34}{r['ap50']:>8.3f}{r['ap50_std']:>8.3f}{r[f'precision_at_{thr}']:>8.3f}"
              f"{r[f'recall_at_{thr}']:>8.3f}")
    print(f"SSL minus scratch AP@0.5: {metrics['ssl_minus_scratch_ap50']:+.3f} (better in {metrics['ssl_wins']}/"
          f"{len(diffs)} runs: {', '.join(f'{d:+.3f}' for d in diffs)})")
    print(f"\n{'identification, 1 enrolled image':<34}{'acc':>8}{'min':>8}   ({len(test_people)} unseen people, "
          f"chance {1 / len(test_people):.3f})")
    for name, r in ident.items():
        print(f"{name:<34}{r['accuracy']:>8.3f}{r['min_accuracy']:>8.3f}")
    print(f"\nwrote {out / 'metrics.json'}, {out / 'detections.png'}, SSL model in {out / 'ssl' / 'final'} "
          f"({metrics['total_seconds']:.0f}s)")
    state.wait_for_everyone()
    return metrics


def main(argv: Optional[List[str]] = None) -> int:
    from multissl.errors import exit_status

    return exit_status("face_detection", lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
