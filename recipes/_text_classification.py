"""Shared machinery of the text-classification recipes (``spam_detection``, ``text_categorization``).

Protocol, for every seed s in ``range(--seeds)``:

1. a stratified ``1 - test_fraction`` / ``test_fraction`` split of the labelled records
   (``random_state = s``);
2. for every k in ``--labels-per-class`` (``all`` = every training record), the same labelled
   subset for every row: k records per class drawn from the training part with seed s;
3. rows, all evaluated on the same test records:

   - ``tfidf_lr``: TF-IDF of word 1-2-grams + character 2-5-grams (sublinear tf), logistic
     regression with C (and, with all labels, class weighting) chosen by stratified
     cross-validation on the labelled subset -- what a practitioner would fit;
   - ``scratch_finetune``: the text encoder from random weights, fine-tuned end to end;
   - ``ssl_probe``: logistic regression on the frozen SSL embeddings (C by the same CV);
   - ``ssl_finetune``: the SSL encoder fine-tuned exactly like the from-scratch one (same
     augmentation -- the adapter's light token dropout --, optimiser, steps, and the optional
     LP-FT head-only warm-up ``--finetune-probe-steps``).

The SSL encoder is pretrained once, without labels, on ``--pretrain-on all`` records (the
texts of every split, labels never read; the vectoriser of the TF-IDF baseline is fitted on
the same texts, so both get the unlabeled corpus) or, with ``--pretrain-on train``, once per
split on its training texts only (the test texts never seen; costs ``--seeds`` pretrainings).

With ``--ensemble N`` (default 1) the SSL rows are ensembles: N pretrainings of the same
encoder with seeds ``--seed`` .. ``--seed + N - 1`` (one tokenizer), each probed / fine-tuned as
above, their class probabilities averaged (the predicted class is the most probable one). The
from-scratch row gets the same budget: N encoders from different random weights, each fine-tuned
the same way, averaged alike. TF-IDF + LR stays one model (its fit is deterministic).

Metrics: accuracy, MCC, macro F1, and for a binary task with ``positive_label`` the F1 of the
positive class (spam F1). ``metrics.json`` holds every run; the plot shows the main metric
against labels per class.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

ROWS = ("tfidf_lr", "scratch_finetune", "ssl_probe", "ssl_finetune")
ROW_LABELS = {
    "tfidf_lr": "TF-IDF (word+char) + LR, C by CV",
    "scratch_finetune": "from scratch (same aug, same budget)",
    "ssl_probe": "SSL frozen + LR, C by CV",
    "ssl_finetune": "SSL fine-tuned",
}
ALL = 0  # labels_per_class value meaning "every training record"
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


@dataclass
class Args:
    data: str
    output: str
    text_column: Optional[str] = None
    label_column: str = "label"
    column_names: Optional[List[str]] = None
    positive_label: Optional[str] = None
    test_fraction: float = 0.3
    labels_per_class: List[int] = field(default_factory=lambda: [8, 32, ALL])
    seeds: int = 5
    method: str = "mae"
    preset: Optional[str] = None
    mask_ratio: Optional[float] = None
    temperature: Optional[float] = None
    style: Optional[str] = None  # mae's style: "mae" or "simmim" (BERT-style); None: the text adapter's (simmim)
    encoder: str = "transformer"
    dim: Optional[int] = None
    depth: Optional[int] = None
    vocab_size: Optional[int] = None
    max_length: Optional[int] = None
    epochs: int = 10
    batch_size: int = 64
    lr: Optional[float] = None
    pretrain_on: str = "all"
    finetune_steps: int = 200
    finetune_epochs_all: float = 3.0
    finetune_batch_size: int = 32
    finetune_lr: float = 1e-3
    finetune_encoder_lr_ratio: float = 0.5
    finetune_probe_steps: int = 0
    max_records: Optional[int] = None
    rows: List[str] = field(default_factory=lambda: list(ROWS))
    ensemble: int = 1
    threads: Optional[int] = None
    seed: int = 0
    progress: bool = True


def build_parser(prog: str, description: str, defaults: Dict[str, Any]) -> argparse.ArgumentParser:
    d = {**asdict(Args(data="", output="")), **defaults}
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--data", default=d.get("data") or None, required=not d.get("data"),
                   help="CSV/TSV/text file, Parquet/Arrow or a saved datasets folder with text + label columns")
    p.add_argument("--output", default=d["output"])
    p.add_argument("--text-column", default=d["text_column"], help="text column(s), comma-separated to join several")
    p.add_argument("--label-column", default=d["label_column"])
    p.add_argument("--column-names", default=",".join(d["column_names"]) if d["column_names"] else None,
                   help="comma-separated names of the columns of a header-less CSV/TSV file")
    p.add_argument("--positive-label", default=d["positive_label"],
                   help="the positive class of a binary task (F1 of this class is reported)")
    p.add_argument("--test-fraction", type=float, default=d["test_fraction"])
    p.add_argument("--labels-per-class", default=",".join("all" if k == ALL else str(k) for k in d["labels_per_class"]),
                   help="comma-separated k values; 'all' = every training record")
    p.add_argument("--seeds", type=int, default=d["seeds"], help="splits / label draws (seeds 0..N-1)")
    p.add_argument("--method", default=d["method"], help="SSL method: mae (masked language modelling, default), simclr (SimCSE views), data2vec, ...")
    p.add_argument("--preset", default=d["preset"], help="text view preset: simcse, token, light, none")
    p.add_argument("--mask-ratio", type=float, default=d["mask_ratio"], help="mae/data2vec mask ratio")
    p.add_argument("--temperature", type=float, default=d["temperature"], help="simclr temperature")
    p.add_argument("--style", choices=("mae", "simmim"), default=None,
                   help="mae only: 'mae' (the encoder sees the visible pieces, a light decoder fills the rest) or "
                        "'simmim' (BERT-style: mask embeddings in the encoder's input, a linear head); "
                        f"default: {d['style'] or 'the text adapter default, simmim'}")
    p.set_defaults(recipe_style=d["style"])  # the recipe's own choice, used with --method mae only
    p.add_argument("--encoder", default=d["encoder"])
    p.add_argument("--dim", type=int, default=d["dim"])
    p.add_argument("--depth", type=int, default=d["depth"])
    p.add_argument("--vocab-size", type=int, default=d["vocab_size"])
    p.add_argument("--max-length", type=int, default=d["max_length"])
    p.add_argument("--epochs", type=int, default=d["epochs"], help="pretraining epochs")
    p.add_argument("--batch-size", type=int, default=d["batch_size"])
    p.add_argument("--lr", type=float, default=d["lr"])
    p.add_argument("--pretrain-on", choices=["all", "train"], default=d["pretrain_on"])
    p.add_argument("--finetune-steps", type=int, default=d["finetune_steps"], help="steps with k labels per class")
    p.add_argument("--finetune-epochs-all", type=float, default=d["finetune_epochs_all"],
                   help="fine-tuning epochs with all labels (at least --finetune-steps steps)")
    p.add_argument("--finetune-batch-size", type=int, default=d["finetune_batch_size"])
    p.add_argument("--finetune-lr", type=float, default=d["finetune_lr"])
    p.add_argument("--finetune-encoder-lr-ratio", type=float, default=d["finetune_encoder_lr_ratio"])
    p.add_argument("--finetune-probe-steps", type=int, default=d["finetune_probe_steps"],
                   help="LP-FT: steps training the head alone on frozen features before fine-tuning everything "
                        "(both fine-tuned rows)")
    p.add_argument("--max-records", type=int, default=d["max_records"], help="a stratified subset of this size")
    p.add_argument("--rows", default=",".join(d["rows"]), help=f"which rows to run, of {', '.join(ROWS)}")
    p.add_argument("--ensemble", type=int, default=d["ensemble"],
                   help="N pretrainings (seeds --seed .. --seed+N-1) whose probes / fine-tuned models vote "
                        "(mean class probability); from scratch gets N models too")
    p.add_argument("--threads", type=int, default=d["threads"], help="torch CPU threads")
    p.add_argument("--seed", type=int, default=d["seed"], help="seed of the pretraining")
    p.add_argument("--no-progress", action="store_true")
    return p


def parse_args(parser: argparse.ArgumentParser, argv: Optional[List[str]]) -> Args:
    a = parser.parse_args(argv)
    ks = []
    for part in a.labels_per_class.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "all":
            ks.append(ALL)
            continue
        try:
            k = int(part)
        except ValueError:
            parser.error(f"--labels-per-class must list integers or 'all', got {a.labels_per_class!r}")
        if k < 2:
            parser.error("--labels-per-class values must be >= 2 (cross-validation needs two per class)")
        ks.append(k)
    if not ks:
        parser.error("--labels-per-class is empty")
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad or not rows:
        parser.error(f"--rows must list some of {', '.join(ROWS)}, got {a.rows!r}")
    if not 0 < a.test_fraction < 1:
        parser.error(f"--test-fraction must be in (0, 1), got {a.test_fraction}")
    for name in ("seeds", "epochs", "batch_size", "finetune_steps", "finetune_batch_size", "ensemble"):
        if getattr(a, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if a.finetune_probe_steps < 0:
        parser.error("--finetune-probe-steps must be >= 0")
    if a.style is not None and a.method != "mae":
        parser.error(f"--style applies to --method mae, not {a.method!r}")
    style = a.style if a.style is not None else (a.recipe_style if a.method == "mae" else None)
    names = [c.strip() for c in a.column_names.split(",")] if a.column_names else None
    return Args(data=a.data, output=a.output, text_column=a.text_column, label_column=a.label_column,
                column_names=names, positive_label=a.positive_label, test_fraction=a.test_fraction,
                labels_per_class=ks, seeds=a.seeds, method=a.method, preset=a.preset, mask_ratio=a.mask_ratio,
                temperature=a.temperature, style=style, encoder=a.encoder, dim=a.dim, depth=a.depth, vocab_size=a.vocab_size,
                max_length=a.max_length, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                pretrain_on=a.pretrain_on, finetune_steps=a.finetune_steps,
                finetune_epochs_all=a.finetune_epochs_all, finetune_batch_size=a.finetune_batch_size,
                finetune_lr=a.finetune_lr, finetune_encoder_lr_ratio=a.finetune_encoder_lr_ratio,
                finetune_probe_steps=a.finetune_probe_steps,
                max_records=a.max_records, rows=rows, ensemble=a.ensemble, threads=a.threads, seed=a.seed,
                progress=not a.no_progress)


# ------------------------------------------------------------------------------------ data
def load_corpus(args: Args) -> Tuple[List[str], np.ndarray, List[str], Optional[int]]:
    """Texts, integer labels, class names and the positive class index (binary tasks)."""
    from multissl.adapters.text_io import read_texts
    from multissl.errors import DataError

    records = read_texts(args.data, column=args.text_column, label_column=args.label_column,
                         column_names=args.column_names)
    classes = sorted(set(records.labels))
    if len(classes) < 2:
        raise DataError(f"{args.data}: column {args.label_column!r} has {len(classes)} class; need at least 2")
    y = np.asarray([classes.index(v) for v in records.labels], dtype=np.int64)
    positive = None
    if args.positive_label is not None:
        if args.positive_label not in classes:
            raise DataError(f"{args.data}: no record has label {args.positive_label!r} (labels: {', '.join(classes)})")
        if len(classes) != 2:
            raise DataError(f"{args.data}: --positive-label needs a binary task, found {len(classes)} classes")
        positive = classes.index(args.positive_label)
    texts = records.texts
    if args.max_records and args.max_records < len(texts):
        from sklearn.model_selection import train_test_split

        idx, _ = train_test_split(np.arange(len(y)), train_size=args.max_records, stratify=y, random_state=args.seed)
        idx = np.sort(idx)
        texts, y = [texts[i] for i in idx], y[idx]
    return texts, y, classes, positive


def split(y: np.ndarray, test_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    from multissl.errors import DataError

    try:
        train, test = train_test_split(np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=seed)
    except ValueError as e:
        raise DataError(f"cannot make a stratified split ({e})") from None
    return np.sort(train), np.sort(test)


def labelled_subset(y: np.ndarray, train: np.ndarray, k: int, seed: int) -> np.ndarray:
    from multissl.evaluation.few_labels import sample_per_class

    return train if k == ALL else sample_per_class(y, train, k, seed)


# ------------------------------------------------------------------------------------ metrics
def scores(y_true: np.ndarray, y_pred: np.ndarray, positive: Optional[int]) -> Dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    out = {"accuracy": float(accuracy_score(y_true, y_pred)), "mcc": float(matthews_corrcoef(y_true, y_pred)),
           "macro_f1": float(f1_score(y_true, y_pred, average="macro"))}
    if positive is not None:
        out["f1"] = float(f1_score(y_true, y_pred, pos_label=positive, average="binary"))
    return out


def _cv(y: np.ndarray, seed: int):
    from sklearn.model_selection import StratifiedKFold

    folds = int(min(5, np.bincount(y).min()))
    return StratifiedKFold(n_splits=max(2, folds), shuffle=True, random_state=seed)


def _cv_scoring(positive: Optional[int]) -> Any:
    from sklearn.metrics import f1_score, make_scorer

    if positive is None:
        return "f1_macro"
    return make_scorer(f1_score, pos_label=positive)


def tuned_logistic_regression(x: Any, y: np.ndarray, seed: int, positive: Optional[int], scale: bool,
                              all_labels: bool) -> Any:
    """Logistic regression with C (and class weighting when the labels are imbalanced) chosen
    by stratified CV on the labelled data only, refit on all of it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # liblinear: the usual solver for sparse TF-IDF, and fast at large C where L-BFGS crawls;
    # it is binary, so several classes are one-vs-rest
    clf: Any = LogisticRegression(solver="liblinear", max_iter=1000)
    prefix = "logisticregression__"
    if len(np.unique(y)) > 2:
        clf = OneVsRestClassifier(clf)
        prefix = "onevsrestclassifier__estimator__"
    grid: Dict[str, Any] = {prefix + "C": list(C_GRID)}
    if all_labels:
        grid[prefix + "class_weight"] = [None, "balanced"]
    pipe = make_pipeline(StandardScaler(), clf) if scale else make_pipeline(clf)
    search = GridSearchCV(pipe, grid, cv=_cv(y, seed), scoring=_cv_scoring(positive), n_jobs=1)
    search.fit(x, y)
    return search


#: the seed of ensemble member m's fine-tuning (and from-scratch weights) on split s is s + STRIDE * m
MEMBER_SEED_STRIDE = 1000


def class_probabilities(search: Any, x: Any, n_classes: int) -> np.ndarray:
    """A fitted classifier's probabilities as an (n, n_classes) array, column c = class c."""
    p = search.predict_proba(x)
    out = np.zeros((p.shape[0], n_classes))
    out[:, np.asarray(search.classes_, dtype=int)] = p
    return out


def vote(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """The ensemble's prediction: the class of highest mean probability over the members (ties: lowest index)."""
    if not probabilities:
        raise ValueError("vote needs at least one member's probabilities")
    return np.mean(np.stack(probabilities), axis=0).argmax(1)


def tfidf_features(corpus: Sequence[str]) -> Any:
    """A fitted word 1-2-gram + char_wb 2-5-gram TF-IDF vectoriser (sublinear tf)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union

    vec = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True),
                     TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2,
                                     lowercase=True))
    vec.fit(list(corpus))
    return vec


def summarise(runs: Dict[str, Dict[str, List[Dict[str, float]]]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for row, per_k in runs.items():
        out[row] = {}
        for k, lst in per_k.items():
            if not lst:
                continue
            out[row][k] = {m: {"mean": float(np.mean([r[m] for r in lst])), "std": float(np.std([r[m] for r in lst])),
                               "runs": [r[m] for r in lst]} for m in lst[0]}
    return out


def finetune_steps(args: Args, k: int, n_labelled: int) -> int:
    """Fine-tuning steps of both fine-tuned rows: ``--finetune-steps`` with k labels per class;
    with all labels ``--finetune-epochs-all`` epochs of the labelled set, and never fewer steps
    than with k per class (on a small corpus a few epochs are only a few dozen steps)."""
    if k != ALL:
        return args.finetune_steps
    return max(args.finetune_steps, int(round(args.finetune_epochs_all * n_labelled / args.finetune_batch_size)))


def k_name(k: int) -> str:
    return "all" if k == ALL else str(k)


def format_table(summary: Dict[str, Any], metrics: Sequence[str], n_seeds: int) -> str:
    ks = list(next(iter(summary.values())).keys())
    lines = []
    for m in metrics:
        head = f"{m + ' (mean ± std, ' + str(n_seeds) + ' seeds)':<42}" + "".join(
            f"{(k + ' labels/class') if k != 'all' else 'all labels':>20}" for k in ks)
        lines += [head, "-" * len(head)]
        for row, per_k in summary.items():
            cells = "".join(f"{per_k[k][m]['mean']:>12.4f} ± {per_k[k][m]['std']:.3f}" if k in per_k else f"{'-':>20}"
                            for k in ks)
            lines.append(f"{ROW_LABELS[row]:<42}{cells}")
        lines.append("")
    return "\n".join(lines)


def plot(summary: Dict[str, Any], metric: str, path: Path, title: str, n_train_per_class: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ticks: Dict[float, str] = {}
    for row, per_k in summary.items():
        xs, ms, ss = [], [], []
        for k, v in per_k.items():
            x = n_train_per_class if k == "all" else float(k)
            ticks[x] = f"all\n(~{n_train_per_class:.0f})" if k == "all" else k
            xs.append(x)
            ms.append(v[metric]["mean"])
            ss.append(v[metric]["std"])
        ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label=ROW_LABELS[row])
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks))
    ax.set_xticklabels([ticks[x] for x in sorted(ticks)])
    ax.minorticks_off()
    ax.set_xlabel("labelled records per class")
    ax.set_ylabel(f"test {metric.replace('_', ' ')}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ the run
def remove_stale_members(out: Path, size: int) -> List[Path]:
    """Delete the model folders ``final_k`` (k > ``size``) an earlier, larger ``--ensemble`` run
    left in ``out``, so the folder holds this run's members only. Only folders that hold a saved
    model (``config.json``) are touched; returns those removed."""
    import re
    import shutil

    removed = []
    for d in sorted(out.glob("final_*")):
        m = re.fullmatch(r"final_(\d+)", d.name)
        if m and int(m.group(1)) > size and d.is_dir() and (d / "config.json").is_file():
            shutil.rmtree(d)
            removed.append(d)
    return removed


def run(args: Args, recipe: str, log: Callable[[str], None] = print,
        targets: Optional[Callable[[Dict[str, Any], Args], Dict[str, Any]]] = None) -> Dict[str, Any]:
    import torch

    from multissl.adapters.base import take
    from multissl.adapters.text import TextAdapter
    from multissl.api import pretrain
    from multissl.distributed import process_state
    from multissl.evaluation import FinetuneConfig, finetune
    from multissl.evaluation.finetune import predict_proba
    from multissl.evaluation.few_labels import write_json_atomic
    from multissl.trainer import embed_prepared

    t0 = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    state = process_state()  # under `accelerate launch`: every process pretrains, the main one reports
    if not state.is_main_process:
        log = _quiet
    texts, y, classes, positive = load_corpus(args)
    n_classes = len(classes)
    splits = [split(y, args.test_fraction, s) for s in range(args.seeds)]
    smallest = min(int(np.bincount(y[tr], minlength=n_classes).min()) for tr, _ in splits)
    few = [k for k in args.labels_per_class if k != ALL]
    if few and max(few) > smallest:
        from multissl.errors import DataError

        raise DataError(f"{args.data}: a class has only {smallest} training records, fewer than "
                        f"--labels-per-class {max(few)}")
    log(f"{recipe}: {len(texts)} labelled texts, classes {', '.join(f'{c} ({int((y == i).sum())})' for i, c in enumerate(classes))}; "
        f"{args.seeds} stratified {1 - args.test_fraction:.0%}/{args.test_fraction:.0%} splits")

    adapter_config: Dict[str, Any] = {}
    for key, value in (("preset", args.preset), ("vocab_size", args.vocab_size), ("max_length", args.max_length)):
        if value is not None:
            adapter_config[key] = value
    encoder_kwargs = {k: v for k, v in (("dim", args.dim), ("depth", args.depth)) if v is not None}
    method_kwargs: Dict[str, Any] = {}
    if args.mask_ratio is not None:
        method_kwargs["mask_ratio"] = args.mask_ratio
    if args.temperature is not None:
        method_kwargs["temperature"] = args.temperature
    if args.style is not None:
        method_kwargs["style"] = args.style
    want = set(args.rows)
    need_ssl = bool(want & {"ssl_probe", "ssl_finetune"})

    # one pretraining (on every text) or one per split (on its training texts)
    corpora = [np.arange(len(texts))] if args.pretrain_on == "all" else [tr for tr, _ in splits]
    # per corpus: the adapter, the encoded texts, and the ensemble's pretrained models and embeddings
    models: List[Tuple[TextAdapter, Dict[str, torch.Tensor], List[Any], List[np.ndarray]]] = []
    pretrain_seconds: List[float] = []
    history: List[Any] = []
    member_seeds = [args.seed + i for i in range(args.ensemble)]
    for ci, corpus_idx in enumerate(corpora):
        adapter = TextAdapter(**adapter_config)
        adapter.fit([texts[i] for i in corpus_idx])
        prepared = adapter.encode(texts)
        members: List[Any] = []
        zs: List[np.ndarray] = []
        for mi, member_seed in enumerate(member_seeds if need_ssl else []):
            t1 = time.perf_counter()
            where = "all texts" if args.pretrain_on == "all" else f"split {ci}'s training texts"
            which = f" (ensemble member {mi + 1}/{args.ensemble}, seed {member_seed})" if args.ensemble > 1 else ""
            log(f"pretraining {args.method} on {len(corpus_idx)} {where} without labels{which} "
                f"({args.encoder}, {args.epochs} epochs, vocabulary {adapter.tokenizer.vocab_size}, "
                f"max_length {adapter.max_length})")
            model = pretrain(take(prepared, torch.as_tensor(corpus_idx)), adapter=adapter, method=args.method,
                             epochs=args.epochs, batch_size=args.batch_size, encoder=args.encoder,
                             encoder_kwargs=encoder_kwargs, method_kwargs=method_kwargs, seed=member_seed,
                             lr=args.lr, progress=args.progress)
            pretrain_seconds.append(time.perf_counter() - t1)
            history.append(model.config.get("history", []))
            members.append(model)
            zs.append(embed_prepared(model.encoder, adapter, prepared).numpy())
        models.append((adapter, prepared, members, zs))
    if not state.is_main_process:  # the evaluation is cheap next to pretraining: the main process does it alone
        state.wait_for_everyone()
        return {}

    vec = None
    if "tfidf_lr" in want:
        corpus_texts = texts if args.pretrain_on == "all" else None
        vec = tfidf_features(corpus_texts) if corpus_texts is not None else None
        x_all = vec.transform(texts) if vec is not None else None

    runs: Dict[str, Dict[str, List[Dict[str, float]]]] = {r: {k_name(k): [] for k in args.labels_per_class}
                                                          for r in ROWS if r in want}
    chosen_c: Dict[str, List[Any]] = {"tfidf_lr": [], "ssl_probe": []}
    t_rows = {r: 0.0 for r in runs}
    last_preds: Dict[Tuple[str, str, int], Tuple[np.ndarray, np.ndarray]] = {}  # (row, k, seed) -> (true, predicted)
    for s, (train, test) in enumerate(splits):
        adapter, prepared, members, zs = models[0 if args.pretrain_on == "all" else s]
        if "tfidf_lr" in want and args.pretrain_on == "train":
            vec = tfidf_features([texts[i] for i in train])
            x_all = vec.transform(texts)
        test_data = take(prepared, torch.as_tensor(test))
        for k in args.labels_per_class:
            kn = k_name(k)
            lab = labelled_subset(y, train, k, s)
            line = []
            if "tfidf_lr" in runs:
                t1 = time.perf_counter()
                search = tuned_logistic_regression(x_all[lab], y[lab], s, positive, scale=False, all_labels=k == ALL)
                tfidf_pred = search.predict(x_all[test])
                runs["tfidf_lr"][kn].append(scores(y[test], tfidf_pred, positive))
                last_preds[("tfidf_lr", kn, s)] = (y[test], tfidf_pred)
                chosen_c["tfidf_lr"].append({"k": kn, "seed": s, **search.best_params_})
                t_rows["tfidf_lr"] += time.perf_counter() - t1
            if "ssl_probe" in runs:
                t1 = time.perf_counter()
                probs = []
                for mi, z in enumerate(zs):
                    search = tuned_logistic_regression(z[lab], y[lab], s, positive, scale=True, all_labels=k == ALL)
                    probs.append(class_probabilities(search, z[test], n_classes))
                    chosen_c["ssl_probe"].append({"k": kn, "seed": s, **({"member": mi} if len(zs) > 1 else {}),
                                                  **search.best_params_})
                probe_pred = vote(probs)
                runs["ssl_probe"][kn].append(scores(y[test], probe_pred, positive))
                last_preds[("ssl_probe", kn, s)] = (y[test], probe_pred)
                t_rows["ssl_probe"] += time.perf_counter() - t1
            steps = finetune_steps(args, k, len(lab))
            for row in ("scratch_finetune", "ssl_finetune"):
                if row not in runs:
                    continue
                t1 = time.perf_counter()
                probs = []
                for mi in range(args.ensemble):  # member mi: seed s for one model, as without --ensemble
                    ft = FinetuneConfig(steps=steps, batch_size=args.finetune_batch_size, lr=args.finetune_lr,
                                        encoder_lr_ratio=args.finetune_encoder_lr_ratio,
                                        probe_steps=args.finetune_probe_steps, seed=s + MEMBER_SEED_STRIDE * mi)
                    if row == "scratch_finetune":
                        torch.manual_seed(s + MEMBER_SEED_STRIDE * mi)
                        enc = adapter.build_encoder(args.encoder, **encoder_kwargs)
                    else:
                        enc = members[mi].encoder
                    r = finetune(enc, adapter, take(prepared, torch.as_tensor(lab)), y[lab],
                                 embed_dim=enc.embed_dim, num_classes=n_classes, config=ft)
                    probs.append(predict_proba(r["model"], adapter, test_data).numpy())
                pred = vote(probs)
                runs[row][kn].append(scores(y[test], pred, positive))
                last_preds[(row, kn, s)] = (y[test], pred)
                t_rows[row] += time.perf_counter() - t1
            main = "f1" if positive is not None else "accuracy"
            line = "  ".join(f"{r}={runs[r][kn][-1][main]:.3f}" for r in runs)
            log(f"  seed {s}, {kn} labels/class ({len(lab)} labelled): {main} {line}")

    summary = summarise(runs)
    # confusion matrices of every row at the largest label count, first seed
    from multissl.evaluation.confusion import confusion_counts, plot_confusion_matrices

    k_last, s_first = k_name(args.labels_per_class[-1]), min(key[2] for key in last_preds) if last_preds else 0
    confusions = {row: confusion_counts(*last_preds[(row, k_last, s_first)], n_classes)
                  for row in runs if (row, k_last, s_first) in last_preds}
    main_metric = "f1" if positive is not None else "accuracy"
    metric_list = (["f1", "accuracy", "mcc"] if positive is not None else ["accuracy", "macro_f1", "mcc"])
    n_train_per_class = float(np.mean([len(tr) for tr, _ in splits])) / n_classes
    metrics = {
        "recipe": recipe, "data": str(args.data), "classes": classes,
        "positive_label": args.positive_label, "num_records": len(texts),
        "num_test": int(len(splits[0][1])), "num_train": int(len(splits[0][0])),
        "pretrain_on": args.pretrain_on, "num_pretrain": [int(len(c)) for c in corpora] if need_ssl else [],
        "ensemble": {"size": args.ensemble, "pretraining_seeds": member_seeds if need_ssl else [],
                     "rule": "mean class probability of the members, most probable class"},
        "args": asdict(args), "results": summary,
        "confusion_matrices": {"labels_per_class": k_last, "seed": s_first,
                               **{row: m.tolist() for row, m in confusions.items()}}, "chosen_hyperparameters": chosen_c,
        "pretrain_seconds": [round(t, 1) for t in pretrain_seconds], "row_seconds": {k: round(v, 1) for k, v in t_rows.items()},
        "total_seconds": round(time.perf_counter() - t0, 1), "pretrain_history": history,
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, torch threads "
                   f"{torch.get_num_threads()}, CUDA {'yes' if torch.cuda.is_available() else 'no'}",
    }
    if targets is not None:
        metrics["targets"] = targets(summary, args)
    metrics["tokenizer"] = {"vocab_size": models[0][0].tokenizer.vocab_size, "max_length": models[0][0].max_length}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "metrics.json", metrics)
    plot(summary, main_metric, out / f"{main_metric}_vs_labels.png", f"{recipe}: {Path(args.data).name}",
         n_train_per_class)
    if confusions:
        plot_confusion_matrices(confusions, classes, out / "confusion_matrix.png",
                                f"{recipe}: {k_last} labels/class, seed {s_first}")
    for mi, model in enumerate(models[0][2]):  # the first corpus's models: final, final_2, ... final_N
        model.save_pretrained(out / ("final" if mi == 0 else f"final_{mi + 1}"))
    if models[0][2]:
        remove_stale_members(out, len(models[0][2]))
    log("")
    log(format_table(summary, metric_list, args.seeds))
    for name, t in metrics.get("targets", {}).items():
        log(f"target {name}: {'MET' if t['met'] else 'missed'} ({t['detail']})")
    saved = (f", model in {out / 'final'}" if args.ensemble == 1 else
             f", models in {out / 'final'} .. {out / f'final_{args.ensemble}'}")
    log(f"wrote {out / 'metrics.json'}, {out / (main_metric + '_vs_labels.png')}"
        + (saved if need_ssl else "") + f"; {metrics['total_seconds']:.0f} s")
    state.wait_for_everyone()
    return metrics


def _quiet(*_: Any, **__: Any) -> None:
    """The log of the processes other than the main one."""


def main(recipe: str, parser: argparse.ArgumentParser, argv: Optional[List[str]],
         targets: Optional[Callable[[Dict[str, Any], Args], Dict[str, Any]]] = None) -> int:
    from multissl.errors import exit_status

    return exit_status(recipe, lambda: run(parse_args(parser, argv), recipe, targets=targets))
