"""Online signature verification (SVC2004 protocol): writer-independent SSL embedding vs DTW vs their fusion, skilled and random forgeries.

Siamese networks were invented for this task (Bromley et al., "Signature verification using a
Siamese time delay neural network", NIPS 1993); here the encoder learns **without identity
labels**: it is pretrained with a self-supervised method on the signatures of *other* users
(users are split into folds; each fold is evaluated with an encoder that never saw any of its
files), then used as a fixed embedding. By default the second view of a pretraining signature is an
augmented view of one of its mutual DTW nearest neighbours in that pool (``--positives dtw``,
:mod:`multissl.positives`): mined without labels, they are nearly always another signature of
the same writer.

Protocol (SVC2004 Task 2; Yeung et al., ICBA 2004): for every user and each of ``--trials``
random draws, enrol ``--enrol`` genuine signatures drawn from S1..S``--enrol-from``; score the
user's other genuine signatures (S1..S``--genuine``) against the user's skilled forgeries
(S``--genuine``+1 and above) and against random forgeries (the genuine signatures of the other
users of the same fold). A questioned signature's score is its distance to the nearest
reference (``min``; or the ``mean`` over references) divided by the mean distance between the
user's references (per-user normalisation). Four systems share this scoring:

- ``ssl``: Euclidean distance between the embeddings of the pretrained encoder (with
  ``--cohort-k k``, divided by ``sqrt(s_a * s_b)``, ``s`` a signature's mean distance to its ``k``
  nearest embeddings among the fold's unlabelled pretraining signatures: cohort scaling);
- ``dtw``: DTW on (x, y, dx, dy, pressure), each channel z-scored per signature (the classic
  baseline, :mod:`multissl.evaluation.dtw`);
- ``fused``: ``w * ssl + (1 - w) * dtw`` of the two per-user normalised scores, ``w`` fixed a
  priori (``--fusion-weight``);
- ``fused_cv``: the same with ``w`` chosen per fold by cross-validation across folds: the
  weight of :data:`FUSION_GRID` with the lowest per-user skilled EER on the *other* folds'
  users, so no evaluated user's label ever chooses its own weight.

Reports skilled- and random-forgery EER, per user (each user's own threshold, averaged) and
pooled (one threshold for everyone), mean and std over trials, and the cost per comparison.

    accelerate launch recipes/signature_verification.py --data ../shared/data/svc2004_task2 \
        --output runs/signature_verification
    accelerate launch -m multissl.recipes.signature_verification --data signatures/ --folds 4

``--data``: a folder of SVC2004 files ``U<user>S<signature>.TXT``. Writes
``<output>/metrics.json``, ``<output>/det.png`` (DET curves), ``<output>/distances.npz`` (every
computed SSL and DTW distance) and each fold's encoder in ``<output>/fold<k>/final``.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

SYSTEMS = ("ssl", "dtw", "fused", "fused_cv")
SYSTEM_LABELS = {"ssl": "SSL embedding", "dtw": "DTW (x, y, dx, dy, p)", "fused": "fused, fixed weight",
                 "fused_cv": "fused, cross-fold weight"}
#: SSL weights the cross-fold fusion chooses from
FUSION_GRID = tuple(round(w, 1) for w in np.linspace(0.0, 1.0, 11))
KINDS = ("skilled", "random")
#: the features of the DTW baseline, z-scored per signature
DTW_FEATURES = ["x", "y", "dx", "dy", "pressure"]
#: ``--augment light``: smaller geometric and tempo changes than the adapter's defaults (the other
#: augmentations keep theirs); with mined positives the natural variation between a writer's
#: signatures comes from the data, and strong time warping hides the slowness of a forgery
LIGHT_AUGMENT = {"rotation": 5.0, "shear": 0.05, "scale": 0.05, "speed": 0.02, "time_warp": 0.05}
#: the CNN encoder's segment means in this recipe (the encoder's own default is 8): with mined
#: positives, finer pooling keeps more of the order of events (docs: "Mined positives")
CNN_SEGMENTS = 64


@dataclass
class Args:
    data: str
    output: str = "runs/signature_verification"
    folds: int = 2
    trials: int = 10
    enrol: int = 5
    enrol_from: int = 10
    genuine: int = 20
    method: Optional[str] = None
    encoder: Optional[str] = None
    encoder_width: Optional[int] = None
    segments: Optional[int] = None
    augment: str = "light"
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    reductions: List[str] = field(default_factory=lambda: ["min", "mean"])
    fusion_weight: float = 0.5
    dtw_band: Optional[float] = None
    positives: str = "dtw"
    positive_neighbours: int = 3
    cohort_k: int = 0
    threads: Optional[int] = None
    seed: int = 0
    progress: bool = True


def parse_args(argv: Optional[List[str]] = None) -> Args:
    p = argparse.ArgumentParser(prog="signature_verification", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder of SVC2004 files U<user>S<signature>.TXT")
    p.add_argument("--output", default=Args.output)
    p.add_argument("--folds", type=int, default=Args.folds, help="user folds; each is evaluated by an encoder "
                   "pretrained on the other folds' users only")
    p.add_argument("--trials", type=int, default=Args.trials, help="random enrolment draws")
    p.add_argument("--enrol", type=int, default=Args.enrol, help="genuine signatures enrolled per user")
    p.add_argument("--enrol-from", type=int, default=Args.enrol_from, help="enrolment draws from S1..S<this>")
    p.add_argument("--genuine", type=int, default=Args.genuine, help="S1..S<this> are genuine, the rest skilled forgeries")
    p.add_argument("--method", default=None, help="SSL method (default: the signature adapter's)")
    p.add_argument("--encoder", default=None, help="cnn or transformer (default: the adapter's)")
    p.add_argument("--encoder-width", type=int, default=None)
    p.add_argument("--segments", type=int, default=None,
                   help=f"the CNN encoder's segment means (default {CNN_SEGMENTS}; the encoder's own default is 8)")
    p.add_argument("--augment", choices=["adapter", "light"], default=Args.augment,
                   help="pretraining views: light (default): smaller geometric and tempo changes (rotation 5 deg, "
                   "shear/scale 0.05, speed 0.02, time warp 0.05); adapter: the signature adapter's defaults")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--reductions", default="min,mean", help="distance to the references: min and/or mean")
    p.add_argument("--fusion-weight", type=float, default=Args.fusion_weight, help="weight of the SSL score")
    p.add_argument("--dtw-band", type=float, default=None, help="Sakoe-Chiba band (fraction); default: none")
    p.add_argument("--positives", choices=["none", "dtw"], default=Args.positives,
                   help="dtw (default): the second view of a pretraining signature is one of its mutual DTW "
                   "nearest neighbours in the fold's pretraining pool (no labels; see docs); none: two views of itself")
    p.add_argument("--positive-neighbours", type=int, default=Args.positive_neighbours,
                   help="k of the mutual k-nearest neighbours (--positives dtw)")
    p.add_argument("--cohort-k", type=int, default=Args.cohort_k,
                   help="scale every SSL distance by the two signatures' mean distance to their k nearest members "
                   "of a cohort, the fold's own pretraining signatures (no labels; docs: cohort scaling); 0 (default): off")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice); "
                   "timings in the docs use 1")
    p.add_argument("--seed", type=int, default=Args.seed)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    reductions = [r.strip() for r in a.reductions.split(",") if r.strip()]
    if not reductions or any(r not in ("min", "mean") for r in reductions):
        p.error(f"--reductions must list min and/or mean, got {a.reductions!r}")
    if a.folds < 2:
        p.error("--folds must be >= 2: the evaluated users' signatures must stay out of pretraining")
    if a.enrol < 2 or a.enrol > a.enrol_from:
        p.error("--enrol must be >= 2 and <= --enrol-from (the reference spread needs two references)")
    if a.enrol_from >= a.genuine:
        p.error("--enrol-from must be < --genuine, so every user keeps genuine signatures to test")
    if a.trials < 1:
        p.error("--trials must be >= 1")
    if a.threads is not None and a.threads < 1:
        p.error("--threads must be >= 1")
    if a.segments is not None and a.segments < 0:
        p.error("--segments must be >= 0")
    if a.positive_neighbours < 1:
        p.error("--positive-neighbours must be >= 1")
    if a.cohort_k < 0:
        p.error("--cohort-k must be >= 0")
    if not 0.0 <= a.fusion_weight <= 1.0:
        p.error(f"--fusion-weight must be in [0, 1], got {a.fusion_weight}")
    return Args(data=a.data, output=a.output, folds=a.folds, trials=a.trials, enrol=a.enrol, enrol_from=a.enrol_from,
                genuine=a.genuine, method=a.method, encoder=a.encoder, encoder_width=a.encoder_width,
                segments=a.segments, augment=a.augment, epochs=a.epochs,
                batch_size=a.batch_size, lr=a.lr, reductions=reductions, fusion_weight=a.fusion_weight,
                dtw_band=a.dtw_band, positives=a.positives, positive_neighbours=a.positive_neighbours,
                cohort_k=a.cohort_k, threads=a.threads, seed=a.seed, progress=not a.no_progress)


# ---------------------------------------------------------------------------------- data
@dataclass
class Corpus:
    """The signature files with their (user, signature number) ids, in natural file order."""

    files: List[Path]
    user: np.ndarray
    number: np.ndarray

    def index(self, user: int, number: int) -> int:
        return self._lookup[(user, number)]

    def __post_init__(self) -> None:
        self._lookup = {(int(u), int(s)): i for i, (u, s) in enumerate(zip(self.user, self.number))}


def load_corpus(folder: str, genuine: int, enrol_from: int) -> Corpus:
    """The SVC2004 files of ``folder``; every user needs S1..S<genuine> and at least one forgery."""
    from multissl.adapters.signature_io import list_signature_files, svc2004_ids
    from multissl.errors import DataError

    if not Path(folder).is_dir():
        raise DataError(f"{folder}: not a folder of SVC2004 files")
    files = list_signature_files(folder)
    ids = np.array([svc2004_ids(f) for f in files], dtype=np.int64).reshape(-1, 2)
    corpus = Corpus(files, ids[:, 0], ids[:, 1])
    for u in np.unique(corpus.user):
        have = set(corpus.number[corpus.user == u].tolist())
        missing = sorted(set(range(1, genuine + 1)) - have)
        if missing:
            raise DataError(f"{folder}: user {u} lacks genuine signature(s) "
                            f"{', '.join(f'U{u}S{s}' for s in missing[:5])} (--genuine {genuine})")
        if max(have) <= genuine:
            raise DataError(f"{folder}: user {u} has no skilled forgeries (files U{u}S{genuine + 1} and above)")
    return corpus


def user_folds(users: Sequence[int], folds: int) -> List[List[int]]:
    """Consecutive groups of users (1-20 and 21-40 for SVC2004 with 2 folds)."""
    from multissl.errors import DataError

    if len(users) < 2 * folds:
        raise DataError(f"{len(users)} users cannot make {folds} folds of at least 2 users "
                        "(random forgeries come from the other users of a fold)")
    return [list(map(int, part)) for part in np.array_split(np.asarray(sorted(users)), folds)]


def fold_pairs(corpus: Corpus, fold: List[int], args: Args) -> Tuple[List[int], List[int]]:
    """The comparisons the protocol needs in one fold, as (reference, query) file indices: each
    user's possible references (S1..S<enrol_from>) against every genuine signature of the fold
    and the user's own forgeries."""
    first: List[int] = []
    second: List[int] = []
    fold_genuine = [corpus.index(v, s) for v in fold for s in range(1, args.genuine + 1)]
    for u in fold:
        queries = fold_genuine + [int(i) for i in np.nonzero(corpus.user == u)[0] if corpus.number[i] > args.genuine]
        for s in range(1, args.enrol_from + 1):
            first += [corpus.index(u, s)] * len(queries)
            second += queries
    return first, second


# ---------------------------------------------------------------------------------- scoring
def enrolment_draw(corpus: Corpus, u: int, fold_users: List[int], rng: np.random.Generator,
                   args: Args) -> Tuple[List[int], Dict[str, List[int]]]:
    """One draw of user ``u``'s references (``args.enrol`` of S1..S<enrol_from>) and the file
    indices of the queries scored against them: the user's other genuine signatures, its skilled
    forgeries, and the genuine signatures of the other users of the fold (random forgeries)."""
    refs = [corpus.index(u, int(s)) for s in rng.choice(np.arange(1, args.enrol_from + 1), args.enrol, replace=False)]
    queries = {
        "genuine": [corpus.index(u, s) for s in range(1, args.genuine + 1) if corpus.index(u, s) not in refs],
        "skilled": [i for i in np.nonzero(corpus.user == u)[0] if corpus.number[i] > args.genuine],
        "random": [corpus.index(v, s) for v in fold_users if v != u for s in range(1, args.genuine + 1)],
    }
    return refs, queries


def scores_for_trial(dist: Dict[str, np.ndarray], corpus: Corpus, fold_users: List[int], rng: np.random.Generator,
                     args: Args, reduction: str) -> Dict[str, Dict[int, Dict[str, np.ndarray]]]:
    """Per system and user: normalised scores of the genuine, skilled and random queries."""
    from multissl.evaluation.verification import normalized_scores

    out: Dict[str, Dict[int, Dict[str, np.ndarray]]] = {s: {} for s in dist}
    for u in fold_users:
        refs, queries = enrolment_draw(corpus, u, fold_users, rng, args)
        for system, d in dist.items():
            rr = d[np.ix_(refs, refs)]
            out[system][u] = {k: normalized_scores(d[np.ix_(q, refs)], rr, reduction) for k, q in queries.items()}
    return out


def score_trials(dist: Dict[str, np.ndarray], corpus: Corpus, folds: List[List[int]], args: Args,
                 reduction: str) -> List[Dict[str, Dict[int, Dict[str, np.ndarray]]]]:
    """For each of ``args.trials`` enrolment draws (the same draws for every system of ``dist``):
    every system's normalised scores for every user of every fold."""
    trials = []
    for t in range(args.trials):
        rng = np.random.default_rng([args.seed, t])
        per_system: Dict[str, Dict[int, Dict[str, np.ndarray]]] = {s: {} for s in dist}
        for fold in folds:
            part = scores_for_trial(dist, corpus, fold, rng, args, reduction)
            for s in per_system:
                per_system[s].update(part[s])
        trials.append(per_system)
    return trials


def fuse(scores: Dict[str, Dict[int, Dict[str, np.ndarray]]], weight: Dict[int, float]) -> Dict[int, Dict[str, np.ndarray]]:
    """``weight[u] * ssl + (1 - weight[u]) * dtw`` of every user's normalised scores."""
    return {u: {k: weight[u] * scores["ssl"][u][k] + (1 - weight[u]) * scores["dtw"][u][k] for k in scores["ssl"][u]}
            for u in scores["ssl"]}


def cross_fold_weights(trials: List[Dict[str, Dict[int, Dict[str, np.ndarray]]]], folds: List[List[int]],
                       grid: Sequence[float] = FUSION_GRID) -> List[float]:
    """For each fold, the SSL weight of ``grid`` whose fused score has the lowest per-user
    skilled-forgery EER (mean over trials) on the users of the *other* folds. Ties go to the
    first in ``grid``."""
    from multissl.evaluation.verification import eer

    users = [u for fold in folds for u in fold]
    err = {}  # (weight, user) -> mean EER over trials
    for w in grid:
        for u in users:
            fused = [fuse({s: {u: t[s][u]} for s in ("ssl", "dtw")}, {u: w})[u] for t in trials]
            err[w, u] = float(np.mean([eer(f["genuine"], f["skilled"]) for f in fused]))
    chosen = []
    for fold in folds:
        others = [u for u in users if u not in fold]
        chosen.append(float(min(grid, key=lambda w: (np.mean([err[w, u] for u in others]), list(grid).index(w)))))
    return chosen


def summarise(trials: List[Dict[str, Dict[int, Dict[str, np.ndarray]]]]) -> Dict[str, Any]:
    """EER (%) per system and forgery kind: per user (mean over users, then mean/std over
    trials) and pooled (one threshold over all users' scores, mean/std over trials); plus each
    user's EER averaged over trials."""
    from multissl.evaluation.verification import eer

    out: Dict[str, Any] = {}
    for system in trials[0]:
        out[system] = {"per_user": {}}
        for kind in KINDS:
            per_user = [[eer(t[system][u]["genuine"], t[system][u][kind]) for u in t[system]] for t in trials]
            pooled = [eer(np.concatenate([t[system][u]["genuine"] for u in t[system]]),
                          np.concatenate([t[system][u][kind] for u in t[system]])) for t in trials]
            means = 100 * np.mean(per_user, axis=1)
            out[system][kind] = {"per_user_eer": float(means.mean()), "per_user_eer_std": float(means.std()),
                                 "pooled_eer": float(100 * np.mean(pooled)), "pooled_eer_std": float(100 * np.std(pooled))}
            users = list(trials[0][system])
            for j, u in enumerate(users):
                out[system]["per_user"].setdefault(str(u), {})[kind] = float(100 * np.mean([t[j] for t in per_user]))
    return out


# ---------------------------------------------------------------------------------- report
def format_table(results: Dict[str, Any], timing: Dict[str, Any], header: str) -> str:
    lines = [header]
    cols = f"{'EER % (mean ± std over trials)':<34}{'skilled/user':>16}{'skilled/pooled':>16}{'random/user':>16}{'random/pooled':>16}"
    for reduction, res in results.items():
        lines += ["", f"score: {reduction} distance to the references / mean reference-reference distance", cols,
                  "-" * len(cols)]
        for system in SYSTEMS:
            r = res[system]
            cells = "".join(f"{r[k]['per_user_eer']:>9.2f} ± {r[k]['per_user_eer_std']:<5.2f}"
                            f"{r[k]['pooled_eer']:>8.2f} ± {r[k]['pooled_eer_std']:<5.2f}" for k in KINDS)
            lines.append(f"{SYSTEM_LABELS[system]:<34}{cells}")
        lines.append(f"SSL weight in the fusion, per fold: fixed {res['fused']['weights']}, "
                     f"cross-fold {res['fused_cv']['weights']}")
    lines += ["", f"cost per comparison ({timing['threads']} thread(s), batched): DTW {timing['dtw_ms_per_comparison']:.3f} ms; "
              f"SSL {timing['ssl_ms_per_comparison_amortised']:.4f} ms amortised over the protocol "
              f"(embedding {timing['ssl_embed_ms_per_signature']:.3f} ms per signature, "
              f"then {1000 * timing['ssl_ms_per_comparison_embedded']:.3f} µs per distance)",
              f"one verification against {timing['references']} references: DTW {timing['dtw_ms_per_verification']:.2f} ms, "
              f"SSL {timing['ssl_ms_per_verification']:.3f} ms (embed the query + {timing['references']} distances)"]
    return "\n".join(lines)


def plot_det(trials_by_system: Dict[str, List[Dict[int, Dict[str, np.ndarray]]]], path: Path, title: str) -> None:
    """DET curves (probit axes) of the pooled scores of all trials: skilled solid, random dashed."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    from multissl.evaluation.verification import det_points

    ticks = np.array([0.1, 0.5, 1, 2, 5, 10, 20, 40])
    probit = lambda p: norm.ppf(np.clip(p, 5e-4, 1 - 5e-4))  # noqa: E731
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for color, system in zip(("tab:blue", "tab:orange", "tab:green", "tab:red"), SYSTEMS):
        for kind, style in zip(KINDS, ("-", "--")):
            trials = trials_by_system[system]
            g = np.concatenate([s[u]["genuine"] for s in trials for u in s])
            i = np.concatenate([s[u][kind] for s in trials for u in s])
            far, frr = det_points(g, i)
            ax.plot(probit(far), probit(frr), style, color=color, label=f"{SYSTEM_LABELS[system]}, {kind}")
    ax.set_xticks(probit(ticks / 100))
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.set_yticks(probit(ticks / 100))
    ax.set_yticklabels([f"{t:g}" for t in ticks])
    ax.set_xlim(probit(0.0005), probit(0.5))
    ax.set_ylim(probit(0.0005), probit(0.5))
    ax.set_xlabel("false acceptance rate (%)")
    ax.set_ylabel("false rejection rate (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def mining_distances(corpus: Corpus, verbose: bool, device: Any = "cpu") -> np.ndarray:
    """DTW between every two signatures, for mining positives (``--positives dtw``): the DTW
    features, z-scored per signature, resampled to 128 points (2.5x cheaper than the tablet's
    sampling, and only the order of the neighbours matters). Each fold mines in the block of its
    pretraining signatures; the evaluated users' rows are never used for it.

    Under ``accelerate launch`` each process computes every ``world_size``-th pair and the
    shares are gathered (on ``device``, which the backend can exchange), so N processes take
    about 1/N of the time and every process ends with the same matrix."""
    import torch

    from multissl.adapters.signature import SignatureAdapter
    from multissl.distributed import gather, rank, world_size
    from multissl.evaluation.dtw import dtw_pairs

    t = time.perf_counter()
    adapter = SignatureAdapter(features=DTW_FEATURES, standardize="signature", resample=128)
    x = adapter.eval_transform(adapter.prepare(corpus.files))
    n = len(corpus.files)
    first, second = np.triu_indices(n, 1)
    share, every = rank(), world_size()
    mine = dtw_pairs(x["x"], x["mask"].sum(1), torch.as_tensor(first[share::every]), torch.as_tensor(second[share::every]))
    with torch.no_grad():
        gathered = gather(mine.to(device)).cpu().numpy()  # rank 0's share, then rank 1's, ...
    d = np.empty(len(first), dtype=np.float32)
    d[np.concatenate([np.arange(len(first))[r::every] for r in range(every)])] = gathered
    out = np.full((n, n), np.inf)
    out[first, second] = d
    out[second, first] = d
    if verbose:
        print(f"mining positives: DTW between all {n} signatures ({len(d)} pairs) in {time.perf_counter() - t:.0f} s")
    return out


def save_distances(path: Path, corpus: Corpus, dist: Dict[str, np.ndarray]) -> None:
    """The computed distances (NaN where the protocol needs none), to re-score without
    recomputing: ``user``, ``number`` (the files' ids) and one (N, N) matrix per system."""
    import os

    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, user=corpus.user, number=corpus.number, files=np.array([f.name for f in corpus.files]),
                        **{name: d.astype(np.float32) for name, d in dist.items()})
    os.replace(tmp, path)


def machine() -> Dict[str, Any]:
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__}


# ---------------------------------------------------------------------------------- run
def run(args: Args) -> Dict[str, Any]:
    import torch

    from multissl.adapters import take
    from multissl.adapters.signature import SignatureAdapter
    from multissl.api import pretrain
    from multissl.distributed import process_state
    from multissl.errors import ConfigError
    from multissl.evaluation.dtw import dtw_pairs
    from multissl.evaluation.few_labels import write_json_atomic
    from multissl.evaluation.verification import cohort_scales
    from multissl.trainer import embed_prepared

    t0 = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    state = process_state()
    corpus = load_corpus(args.data, args.genuine, args.enrol_from)
    users = sorted(set(corpus.user.tolist()))
    folds = user_folds(users, args.folds)
    out = Path(args.output)
    if state.is_main_process:
        print(f"signature_verification: {len(corpus.files)} signatures of {len(users)} users, {args.folds} folds "
              f"({', '.join(f'{f[0]}-{f[-1]}' for f in folds)}), {args.trials} trials of {args.enrol} references")

    # DTW features of every signature, once: (x, y, dx, dy, pressure) z-scored per signature, at
    # the tablet's own sampling (the classic recipe; resampling to a fixed length would erase the
    # sample count, i.e. the duration, that tells a slow forgery from a fluent signature)
    dtw_adapter = SignatureAdapter(features=DTW_FEATURES, standardize="signature", resample=None)
    dtw_in = dtw_adapter.eval_transform(dtw_adapter.prepare(corpus.files))
    dtw_x, dtw_len = dtw_in["x"], dtw_in["mask"].sum(1)

    n = len(corpus.files)
    smallest_cohort = min(int((~np.isin(corpus.user, fold)).sum()) for fold in folds)
    if args.cohort_k > smallest_cohort:
        raise ConfigError(f"--cohort-k {args.cohort_k} is larger than the smallest fold's cohort "
                          f"({smallest_cohort} pretraining signatures)")
    mining = None
    if args.positives == "dtw":
        mining = mining_distances(corpus, state.is_main_process, state.device)
    dist = {s: np.full((n, n), np.nan) for s in ("ssl", "dtw")}
    timing = {"dtw_seconds": 0.0, "dtw_comparisons": 0, "ssl_embed_seconds": 0.0, "ssl_signatures": 0,
              "ssl_distance_seconds": 0.0, "ssl_cohort_embed_seconds": 0.0,
              "ssl_cohort_search_seconds": 0.0}
    pretrain_info = []
    for k, fold in enumerate(folds):
        in_fold = np.isin(corpus.user, fold)
        train_idx, eval_idx = np.nonzero(~in_fold)[0], np.nonzero(in_fold)[0]
        if state.is_main_process:
            print(f"fold {k}: pretraining on {len(train_idx)} signatures of users "
                  f"{', '.join(map(str, sorted(set(corpus.user[train_idx].tolist()))))}; evaluating users {fold[0]}-{fold[-1]}")
        options: Dict[str, Any] = {"lr": args.lr} if args.lr is not None else {}
        encoder_kwargs: Dict[str, Any] = {"width": args.encoder_width} if args.encoder_width else {}
        if args.segments is not None:
            encoder_kwargs["segments"] = args.segments
        elif args.encoder in (None, "cnn"):
            encoder_kwargs["segments"] = CNN_SEGMENTS
        positives = None
        if mining is not None:  # neighbours among this fold's pretraining signatures only
            from multissl.positives import mutual_neighbours

            positives = mutual_neighbours(mining[np.ix_(train_idx, train_idx)], args.positive_neighbours)
        tp = time.perf_counter()
        model = pretrain([corpus.files[i] for i in train_idx], adapter="signature", method=args.method,
                         epochs=args.epochs, batch_size=args.batch_size, encoder=args.encoder,
                         encoder_kwargs=encoder_kwargs, seed=args.seed + k, output_dir=str(out / f"fold{k}"),
                         progress=args.progress, positives=positives,
                         adapter_config=dict(LIGHT_AUGMENT) if args.augment == "light" else None, **options)
        pretrain_info.append({"fold": k, "train_users": sorted(set(corpus.user[train_idx].tolist())),
                              "eval_users": fold, "num_signatures": int(len(train_idx)),
                              "seconds": round(time.perf_counter() - tp, 1), "method": model.config["method"],
                              "encoder": model.config["encoder"], "training": model.config["training"],
                              "final_loss": (model.config.get("history") or [{}])[-1].get("loss")})
        if not state.is_main_process:
            continue

        # SSL: embed the fold's signatures, then Euclidean distances between embeddings (their
        # norm carries information too: on SVC2004 it beat the cosine distance in every run)
        prepared = model.adapter.prepare([corpus.files[i] for i in eval_idx])
        embed_prepared(model.encoder, model.adapter, take(prepared, torch.arange(2)))  # warm-up, not timed
        te = time.perf_counter()
        z = embed_prepared(model.encoder, model.adapter, prepared)
        timing["ssl_embed_seconds"] += time.perf_counter() - te
        timing["ssl_signatures"] += len(eval_idx)
        scales = None
        if args.cohort_k:  # the fold's pretraining signatures, unlabelled, are the cohort
            tc = time.perf_counter()
            cohort = embed_prepared(model.encoder, model.adapter,
                                    model.adapter.prepare([corpus.files[i] for i in train_idx]))
            ts = time.perf_counter()
            scales = torch.as_tensor(cohort_scales(z.numpy(), cohort.numpy(), args.cohort_k), dtype=z.dtype)
            timing["ssl_cohort_embed_seconds"] += ts - tc  # once per encoder, like enrolment
            timing["ssl_cohort_search_seconds"] += time.perf_counter() - ts

        first, second = fold_pairs(corpus, fold, args)
        first_t, second_t = torch.as_tensor(first), torch.as_tensor(second)
        local = {int(g): i for i, g in enumerate(eval_idx)}
        zf, zs = torch.as_tensor([local[i] for i in first]), torch.as_tensor([local[i] for i in second])
        td = time.perf_counter()
        d_ssl = (z[zf] - z[zs]).norm(dim=1)
        if scales is not None:
            d_ssl = d_ssl / torch.sqrt(scales[zf] * scales[zs])
        timing["ssl_distance_seconds"] += time.perf_counter() - td
        tw = time.perf_counter()
        d_dtw = dtw_pairs(dtw_x, dtw_len, first_t, second_t, band=args.dtw_band)
        timing["dtw_seconds"] += time.perf_counter() - tw
        timing["dtw_comparisons"] += len(first)
        for name, d in (("ssl", d_ssl), ("dtw", d_dtw)):
            dist[name][first, second] = d.numpy()
            dist[name][second, first] = d.numpy()  # both distances are symmetric
        print(f"fold {k}: {len(first)} comparisons; DTW {timing['dtw_seconds']:.0f} s so far")
    if not state.is_main_process:
        state.wait_for_everyone()
        return {}
    out.mkdir(parents=True, exist_ok=True)
    save_distances(out / "distances.npz", corpus, dist)

    results: Dict[str, Any] = {}
    det_trials: Dict[str, List[Any]] = {}
    for reduction in args.reductions:
        trials = score_trials(dist, corpus, folds, args, reduction)
        for per_system in trials:
            per_system["fused"] = fuse(per_system, {u: args.fusion_weight for u in users})
        weights = cross_fold_weights(trials, folds)
        for per_system in trials:
            per_system["fused_cv"] = fuse(per_system, {u: w for fold, w in zip(folds, weights) for u in fold})
        results[reduction] = summarise(trials)
        results[reduction]["fused"]["weights"] = [args.fusion_weight] * len(folds)
        results[reduction]["fused_cv"]["weights"] = weights
        for system in SYSTEMS:  # per fold: which users' encoder did better or worse
            per_user = results[reduction][system]["per_user"]
            results[reduction][system]["per_fold"] = [
                {kind: float(np.mean([per_user[str(u)][kind] for u in fold])) for kind in KINDS} for fold in folds]
        if reduction == args.reductions[0]:
            det_trials = {s: [t[s] for t in trials] for s in SYSTEMS}

    comparisons = timing["dtw_comparisons"]
    # with --cohort-k, a signature's search for its neighbours in the cohort is part of embedding it;
    # embedding the cohort itself is done once per encoder and counts in the amortised cost only
    per_sig = (timing["ssl_embed_seconds"] + timing["ssl_cohort_search_seconds"]) / max(1, timing["ssl_signatures"])
    per_dist = timing["ssl_distance_seconds"] / max(1, comparisons)
    timing.update({
        "threads": torch.get_num_threads(),
        "references": args.enrol,
        "dtw_ms_per_comparison": 1000 * timing["dtw_seconds"] / max(1, comparisons),
        "ssl_embed_ms_per_signature": 1000 * per_sig,
        "ssl_ms_per_comparison_embedded": 1000 * per_dist,
        "ssl_ms_per_comparison_amortised": 1000 * (timing["ssl_embed_seconds"] + timing["ssl_cohort_embed_seconds"]
                                                   + timing["ssl_cohort_search_seconds"]
                                                   + timing["ssl_distance_seconds"]) / max(1, comparisons),
    })
    timing["dtw_ms_per_verification"] = args.enrol * timing["dtw_ms_per_comparison"]
    timing["ssl_ms_per_verification"] = 1000 * (per_sig + args.enrol * per_dist)
    timing["ssl_cost_fraction_amortised"] = timing["ssl_ms_per_comparison_amortised"] / timing["dtw_ms_per_comparison"]
    timing["ssl_cost_fraction_per_verification"] = timing["ssl_ms_per_verification"] / timing["dtw_ms_per_verification"]

    targets = {}
    for reduction, res in results.items():
        ssl, dtw, fused, fused_cv = (res[s]["skilled"]["per_user_eer"] for s in SYSTEMS)
        targets[reduction] = {"ssl_minus_dtw_skilled_per_user": ssl - dtw, "ssl_within_1_point_of_dtw": ssl <= dtw + 1.0,
                              "dtw_minus_fused_skilled_per_user": dtw - fused, "fused_beats_dtw_by_0.5": fused <= dtw - 0.5,
                              "dtw_minus_fused_cv_skilled_per_user": dtw - fused_cv,
                              "fused_cv_beats_dtw_by_0.5": fused_cv <= dtw - 0.5}

    metrics = {"recipe": "signature_verification", "data": str(args.data), "args": asdict(args),
               "protocol": {"users": users, "folds": folds, "trials": args.trials, "enrol": args.enrol,
                            "enrol_from": args.enrol_from, "genuine": args.genuine,
                            "random_forgeries": "genuine signatures of the other users of the same fold"},
               "eer_percent": results, "targets": targets, "timing": timing, "pretrain": pretrain_info,
               "machine": machine(), "total_seconds": round(time.perf_counter() - t0, 1)}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "metrics.json", metrics)
    header = (f"signature verification, {Path(args.data).name}: {len(users)} users in {args.folds} folds, "
              f"{args.trials} trials, {args.enrol} references from S1-S{args.enrol_from}")
    if args.cohort_k:
        header += (f"\nSSL distances scaled by a cohort: each fold's pretraining signatures, k = {args.cohort_k} "
                   f"nearest")
    plot_det(det_trials, out / "det.png",
             f"{Path(args.data).name}: {len(users)} users, {args.folds} folds, {args.trials} trials of {args.enrol} references\n"
             f"pooled scores (one threshold for all users), {args.reductions[0]} distance")
    print()
    print(format_table(results, timing, header))
    print(f"\nwrote {out / 'metrics.json'}, {out / 'det.png'}, {out / 'distances.npz'}, encoders in {out}/fold*/final")
    state.wait_for_everyone()
    return metrics


def main(argv: Optional[List[str]] = None) -> int:
    from multissl.errors import exit_status

    return exit_status("signature_verification", lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
