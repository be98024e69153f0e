"""``multissl demo --modality signature``: writer-independent online signature verification.

No signature corpus ships with multissl (SVC2004 must be downloaded), so the demo
**synthesises** pen-tablet recordings (:func:`synthetic_signatures`): several writers, each with
a personal trajectory (a smooth multi-stroke scribble), tempo and pressure habit; every genuine
signing varies in speed, timing, size, slant and stroke placement; every **skilled forgery**
traces the same trajectory (the forger has seen the signature) but slower and less fluently,
with a tremor, shape errors and the forger's own pressure. The demo

1. splits the writers in two halves; pretrains the signature encoder **without any labels**
   (no writer ids, no genuine/forgery flags) on the signatures of the first half;
2. verifies the writers of the other half -- writers the encoder never saw (writer-independent):
   per writer and seed, enrols ``enrol`` genuine signatures drawn at random, scores the other
   genuine ones and the writer's skilled forgeries by their distance to the nearest reference
   divided by the mean reference-reference distance (:mod:`multissl.evaluation.verification`);
3. compares three distances on identical enrolment draws: the SSL embeddings (Euclidean), the
   same encoder untrained (random init, same seed), and DTW on (x, y, dx, dy, pressure)
   z-scored per signature (:mod:`multissl.evaluation.dtw`, the classic baseline);
4. prints the table of equal error rates (pooled over writers: one threshold for everyone;
   and per writer: each writer's own threshold), writes ``metrics.json`` and
   ``score_histograms.png`` (genuine vs skilled-forgery scores per system).

``seeds`` counts repetitions: seed ``s`` pretrains with seed ``s``, initialises the untrained
encoder with seed ``s`` and draws the enrolment sets with seed ``s``. EERs are fractions in [0, 1].
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

SYSTEMS = ("ssl", "untrained", "dtw")
SYSTEM_LABELS = {"ssl": "SSL encoder (pretrained, no labels)", "untrained": "same encoder, untrained",
                 "dtw": "DTW (x, y, dx, dy, pressure)"}
#: the features of the DTW baseline, z-scored per signature
DTW_FEATURES = ["x", "y", "dx", "dy", "pressure"]


def _smooth_curve(rng: np.random.Generator, n: int, terms: int, scale: float) -> np.ndarray:
    """(n,) a smooth random function on [0, 1]: a sum of ``terms`` random sinusoids."""
    u = np.linspace(0.0, 1.0, n)
    f = rng.uniform(0.5, 4.0, terms)
    a = rng.normal(0.0, scale, terms) / np.sqrt(terms)
    p = rng.uniform(0, 2 * np.pi, terms)
    return (a[:, None] * np.sin(2 * np.pi * f[:, None] * u + p[:, None])).sum(0)


def _writer_style(rng: np.random.Generator) -> Dict[str, Any]:
    """One writer: a base trajectory (K, 2) in tablet units, stroke breaks, tempo, pressure habit."""
    k = 200
    u = np.linspace(0, 1, k)
    width = rng.uniform(1500, 3000)
    x = width * u + _smooth_curve(rng, k, 6, 250) + 180 * np.sin(2 * np.pi * rng.uniform(5, 10) * u)
    y = _smooth_curve(rng, k, 6, 500) + 250 * np.cos(2 * np.pi * rng.uniform(4, 9) * u + rng.uniform(0, 6.3))
    strokes = np.sort(rng.choice(np.arange(30, k - 30), int(rng.integers(1, 4)), replace=False))
    return {"base": np.stack([x, y], 1), "strokes": strokes, "points": int(rng.integers(110, 170)),
            "pressure": (rng.uniform(350, 650), rng.uniform(80, 200), rng.uniform(1.5, 5.0), rng.uniform(0, 6.3))}


def _sign(rng: np.random.Generator, style: Dict[str, Any], forged: bool) -> np.ndarray:
    """One signing of ``style``: (T, 5) samples x, y, time (ms), pen_down, pressure at 100 Hz."""
    base = style["base"]
    k = len(base)
    if forged:  # a careful tracer: slower, hesitant, shape errors, tremor, their own pressure
        slow, warp_std, shape_err, tremor = rng.uniform(1.0, 1.45), 0.22, 0.05, 2.5
    else:
        slow, warp_std, shape_err, tremor = rng.uniform(0.85, 1.15), 0.18, 0.04, 1.5
    t = max(24, int(style["points"] * slow))
    # time warp: piecewise speed changes along the trajectory
    speed = np.exp(rng.normal(0, warp_std, 6))
    knots = np.concatenate([[0.0], np.cumsum(speed)]) / speed.sum()
    s = np.interp(np.linspace(0, 1, t), np.linspace(0, 1, len(knots)), knots) * (k - 1)
    xy = np.stack([np.interp(s, np.arange(k), base[:, d]) for d in range(2)], 1)
    rms = float(np.sqrt(((base - base.mean(0)) ** 2).sum(1).mean()))
    xy += shape_err * rms * np.stack([_smooth_curve(rng, t, 4, 1.0) for _ in range(2)], 1)
    # a small affine change: size and slant
    scale = np.exp(rng.normal(0, 0.05, 2))
    shear = rng.normal(0, 0.05)
    xy = (xy - xy[0]) @ np.array([[scale[0], 0.0], [shear, scale[1]]]) + rng.normal(5000, 50, 2)
    xy += tremor * rng.normal(0, 1, xy.shape)
    pen = np.ones(t)
    pen[np.minimum(t - 1, np.searchsorted(s, style["strokes"]))] = 0.0  # pen lifts at the stroke breaks
    p0, p1, pf, pp = style["pressure"]
    if forged:  # the forger's habit, not the writer's
        p0, p1, pf, pp = p0 * rng.uniform(0.8, 1.25), p1 * rng.uniform(0.6, 1.6), pf * rng.uniform(0.7, 1.4), pp + rng.normal(0, 1.0)
    pressure = p0 + p1 * np.sin(2 * np.pi * pf * s / k + pp) + rng.normal(0, 12, t)
    pressure = np.clip(pressure * pen, 0, 1023)
    time_ms = np.cumsum(np.full(t, 10.0)) - 10.0
    return np.column_stack([xy, time_ms, pen, pressure]).astype(np.float32)


def synthetic_signatures(writers: int = 40, genuine: int = 20, forgeries: int = 10,
                         seed: int = 0) -> Tuple[List[np.ndarray], np.ndarray, np.ndarray]:
    """(signatures, writer, forged): a list of (T_i, 5) float32 arrays with the columns x, y,
    time (ms), pen_down, pressure (the signature adapter's 5-column order), the writer id (N,)
    and whether each is a skilled forgery (N,), writer by writer: ``genuine`` signings, then
    ``forgeries`` skilled forgeries of that writer. Deterministic given ``seed``."""
    rng = np.random.default_rng(seed)
    sigs: List[np.ndarray] = []
    writer: List[int] = []
    forged: List[bool] = []
    for w in range(writers):
        style = _writer_style(rng)
        for j in range(genuine + forgeries):
            sigs.append(_sign(rng, style, forged=j >= genuine))
            writer.append(w)
            forged.append(j >= genuine)
    return sigs, np.asarray(writer, dtype=np.int64), np.asarray(forged, dtype=bool)


@dataclass
class SignatureDemoConfig:
    output: str = "runs/demo-signature"
    method: str = "vicreg"
    epochs: int = 15
    batch_size: int = 64
    encoder_width: int = 32
    writers: int = 24
    genuine: int = 15
    forgeries: int = 8
    enrol: int = 5
    seeds: Tuple[int, ...] = (0, 1, 2)
    progress: bool = True
    adapter_config: Optional[Dict[str, Any]] = None  # signature adapter options (augmentation strengths, ...)


def signature_demo(output: str, *, epochs: Optional[int] = None, seeds: int = 3, method: Optional[str] = None,
                   progress: bool = True) -> Dict[str, Any]:
    """Run the demo (see the module docstring); ``epochs`` / ``method`` override the budget."""
    from multissl.demo import demo_config

    return run_signature_demo(demo_config(SignatureDemoConfig, output, epochs=epochs, seeds=seeds, method=method,
                                          progress=progress))


def _within_writer_pairs(writer: np.ndarray, idx: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """All unordered pairs (i < j) of ``idx`` with the same writer."""
    first, second = [], []
    for w in np.unique(writer[idx]):
        own = idx[writer[idx] == w]
        a, b = np.triu_indices(len(own), 1)
        first.append(own[a])
        second.append(own[b])
    return np.concatenate(first), np.concatenate(second)


def _scores(dist: np.ndarray, writer: np.ndarray, forged: np.ndarray, eval_idx: np.ndarray, enrol: int,
            seed: int) -> Dict[int, Dict[str, np.ndarray]]:
    """Per evaluated writer: normalised scores of the non-enrolled genuine signatures and of the
    skilled forgeries; the references are ``enrol`` genuine signatures drawn with ``seed``."""
    from multissl.evaluation.verification import normalized_scores

    rng = np.random.default_rng([seed, 7])
    out = {}
    for w in np.unique(writer[eval_idx]):
        own = eval_idx[writer[eval_idx] == w]
        gen, forg = own[~forged[own]], own[forged[own]]
        refs = rng.choice(gen, enrol, replace=False)
        queries = {"genuine": np.setdiff1d(gen, refs), "skilled": forg}
        rr = dist[np.ix_(refs, refs)]
        out[int(w)] = {k: normalized_scores(dist[np.ix_(q, refs)], rr, "min") for k, q in queries.items()}
    return out


def _eers(scores: Dict[int, Dict[str, np.ndarray]]) -> Tuple[float, float]:
    """(pooled EER, mean per-writer EER) of genuine vs skilled-forgery scores."""
    from multissl.evaluation.verification import eer

    pooled = eer(np.concatenate([s["genuine"] for s in scores.values()]),
                 np.concatenate([s["skilled"] for s in scores.values()]))
    per_writer = float(np.mean([eer(s["genuine"], s["skilled"]) for s in scores.values()]))
    return float(pooled), per_writer


def format_table(rows: List[Dict[str, Any]], seeds: int) -> str:
    head = f"{'skilled-forgery EER (mean ± std over ' + str(seeds) + ' seeds)':<46}{'pooled':>16}{'per writer':>16}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['label']:<46}{r['eer_pooled']:>9.3f} ± {r['eer_pooled_std']:<5.3f}"
                     f"{r['eer_per_writer']:>9.3f} ± {r['eer_per_writer_std']:<5.3f}")
    return "\n".join(lines)


def plot_histograms(scores: Dict[str, Dict[int, Dict[str, np.ndarray]]], eers: Dict[str, float], path: Path,
                    title: str) -> None:
    """One panel per system: histograms of genuine and skilled-forgery scores (first seed)."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SYSTEMS), figsize=(4 * len(SYSTEMS), 3.4))
    for ax, system in zip(axes, SYSTEMS):
        g = np.concatenate([s["genuine"] for s in scores[system].values()])
        f = np.concatenate([s["skilled"] for s in scores[system].values()])
        bins = np.linspace(min(g.min(), f.min()), np.percentile(np.concatenate([g, f]), 99), 30)
        ax.hist(g, bins=bins, alpha=0.6, label="genuine", color="tab:blue")
        ax.hist(f, bins=bins, alpha=0.6, label="skilled forgery", color="tab:red")
        ax.set_title(f"{SYSTEM_LABELS[system]}\npooled EER {eers[system]:.3f}", fontsize=9)
        ax.set_xlabel("normalised distance to the references")
    axes[0].set_ylabel("signatures")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def run_signature_demo(cfg: SignatureDemoConfig) -> Dict[str, Any]:
    import torch

    from multissl.adapters.signature import SignatureAdapter
    from multissl.api import pretrain
    from multissl.evaluation.dtw import dtw_pairs
    from multissl.evaluation.few_labels import write_json_atomic
    from multissl.trainer import embed_prepared

    t_start = time.perf_counter()
    sigs, writer, forged = synthetic_signatures(cfg.writers, cfg.genuine, cfg.forgeries)
    n_train_writers = cfg.writers // 2
    train_idx = np.nonzero(writer < n_train_writers)[0]
    eval_idx = np.nonzero(writer >= n_train_writers)[0]
    out_dir = Path(cfg.output)
    n = len(sigs)

    # DTW: once, on the evaluated writers' own signatures (the only distances the protocol needs)
    t_dtw = time.perf_counter()
    dtw_adapter = SignatureAdapter(features=DTW_FEATURES, standardize="signature", resample=None)
    dtw_in = dtw_adapter.eval_transform(dtw_adapter.prepare(sigs))
    first, second = _within_writer_pairs(writer, eval_idx)
    d = dtw_pairs(dtw_in["x"], dtw_in["mask"].sum(1), torch.as_tensor(first), torch.as_tensor(second)).numpy()
    dist_dtw = np.zeros((n, n))
    dist_dtw[first, second] = d
    dist_dtw[second, first] = d
    dtw_seconds = time.perf_counter() - t_dtw

    print(f"multissl demo: {n} synthetic online signatures of {cfg.writers} writers ({cfg.genuine} genuine + "
          f"{cfg.forgeries} skilled forgeries each); pretraining {cfg.method} without labels on the "
          f"{len(train_idx)} signatures of writers 0-{n_train_writers - 1}, verifying writers "
          f"{n_train_writers}-{cfg.writers - 1} ({cfg.epochs} epochs, {len(cfg.seeds)} seed(s))")
    per_seed: List[Dict[str, Tuple[float, float]]] = []
    first_scores: Dict[str, Dict[int, Dict[str, np.ndarray]]] = {}
    pretrain_info = []
    for s in cfg.seeds:
        tp = time.perf_counter()
        model = pretrain([sigs[i] for i in train_idx], adapter="signature", method=cfg.method, epochs=cfg.epochs,
                         batch_size=cfg.batch_size, encoder="cnn", encoder_kwargs={"width": cfg.encoder_width},
                         seed=s, output_dir=str(out_dir / f"seed{s}"), progress=cfg.progress,
                         checkpoint_every=10**9, overwrite=True, mixed_precision="no",
                         adapter_config=dict(cfg.adapter_config or {}))
        adapter = model.adapter
        prepared = adapter.prepare([sigs[i] for i in eval_idx])
        torch.manual_seed(s)
        untrained = adapter.build_encoder(model.config["encoder"]["name"], **model.config["encoder"].get("kwargs", {}))
        dists = {"dtw": dist_dtw}
        for name, enc in (("ssl", model.encoder), ("untrained", untrained)):
            z = embed_prepared(enc, adapter, prepared).double()
            full = np.zeros((n, n))
            full[np.ix_(eval_idx, eval_idx)] = torch.cdist(z, z).numpy()
            dists[name] = full
        scores = {name: _scores(dists[name], writer, forged, eval_idx, cfg.enrol, s) for name in SYSTEMS}
        per_seed.append({name: _eers(scores[name]) for name in SYSTEMS})
        if not first_scores:
            first_scores = scores
        pretrain_info.append({"seed": s, "seconds": round(time.perf_counter() - tp, 1),
                              "final_loss": (model.config.get("history") or [{}])[-1].get("loss")})
        print(f"seed {s}: " + ", ".join(f"{name} EER {per_seed[-1][name][0]:.3f}" for name in SYSTEMS))

    rows = []
    for name in SYSTEMS:
        pooled = np.array([p[name][0] for p in per_seed])
        per_writer = np.array([p[name][1] for p in per_seed])
        rows.append({"system": name, "label": SYSTEM_LABELS[name],
                     "eer_pooled": float(pooled.mean()), "eer_pooled_std": float(pooled.std()),
                     "eer_per_writer": float(per_writer.mean()), "eer_per_writer_std": float(per_writer.std()),
                     "eer_pooled_per_seed": pooled.tolist()})
    by = {r["system"]: r for r in rows}
    metrics = {
        "dataset": "synthetic online signatures (multissl.demo_signature.synthetic_signatures): "
                   f"{cfg.writers} writers x ({cfg.genuine} genuine + {cfg.forgeries} skilled forgeries), "
                   "columns x, y, time, pen_down, pressure",
        "protocol": {"pretrain_writers": list(range(n_train_writers)),
                     "eval_writers": list(range(n_train_writers, cfg.writers)),
                     "enrol": cfg.enrol, "score": "min distance to the references / mean reference-reference distance",
                     "eer": "fraction in [0, 1]; pooled = one threshold for all writers, per_writer = mean of "
                            "each writer's own EER"},
        "config": {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in asdict(cfg).items()},
        "rows": rows,
        "ssl_minus_untrained_pooled": by["ssl"]["eer_pooled"] - by["untrained"]["eer_pooled"],
        "ssl_minus_dtw_pooled": by["ssl"]["eer_pooled"] - by["dtw"]["eer_pooled"],
        "pretrain": pretrain_info,
        "dtw_seconds": round(dtw_seconds, 1),
        "dtw_comparisons": int(len(first)),
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    print()
    print(format_table(rows, len(cfg.seeds)))
    print(f"\ntotal {metrics['total_seconds']:.0f} s (DTW {dtw_seconds:.0f} s for {len(first)} comparisons); "
          f"SSL - untrained pooled EER: {metrics['ssl_minus_untrained_pooled']:+.3f}, "
          f"SSL - DTW: {metrics['ssl_minus_dtw_pooled']:+.3f}")
    write_json_atomic(out_dir / "metrics.json", metrics)
    png = out_dir / "score_histograms.png"
    plot_histograms(first_scores, {name: per_seed[0][name][0] for name in SYSTEMS}, png,
                    f"synthetic signatures, writers {n_train_writers}-{cfg.writers - 1} (unseen in pretraining), "
                    f"seed {cfg.seeds[0]}")
    print(f"wrote {out_dir / 'metrics.json'}, {png}, models in {out_dir}/seed*/final")
    return metrics


__all__ = ["synthetic_signatures", "signature_demo", "run_signature_demo", "SignatureDemoConfig", "SYSTEMS"]
