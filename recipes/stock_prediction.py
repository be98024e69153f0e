"""Stock prediction from daily OHLCV: SSL on unlabeled price windows, walk-forward evaluation.

For each ticker (one CSV ``Date,Open,High,Low,Close,Volume[,...]`` per ticker) the recipe builds
causal daily features -- log return, gap (open vs previous close), intraday return (close vs
open), log high/low range, and volume relative to its previous 20-day mean (log) -- and cuts
them into windows of ``--window`` days. Two targets per window ending on day t:

- **direction**: whether the next day's log return r_{t+1} is positive;
- **volatility**: realised volatility of the next 5 days, sqrt(sum_{k=1..5} r_{t+k}^2), in %.

Walk-forward split by date: for every fold start in ``--test-starts`` the model sees only
windows whose targets end before that date (pretraining, normalisation statistics, probes and
baselines alike) and is tested on the windows of the following period; a window and its target
horizon never straddle the split. SSL: ``multissl.pretrain`` on the training windows of all
tickers without targets (time-series adapter, ``--method``, default TS2Vec), then on the frozen
embeddings a logistic regression (direction) and a ridge regression (volatility), tuned by
time-ordered cross-validation on the training windows.

Baselines on the same split: persistence (tomorrow's direction = today's; next-5-day volatility
= the last 5 days'), historical mean (majority direction / mean volatility of the training
windows), and logistic / ridge regression on lagged features (the same window, flattened and
normalised, plus HAR volatility terms: the 1-, 5- and 22-day realised volatilities). Metrics:
accuracy and MCC (direction), MSE (volatility), with 95% moving-block bootstrap intervals over
the test days. A **leakage check** flags any direction accuracy above 60% (published daily
direction results sit around 50-58%): that would more likely mean future data in the features.

    accelerate launch recipes/stock_prediction.py --data ../shared/data/stocks_daily_ohlcv \
        --tickers msft aapl --output runs/stocks
    python -m multissl.recipes.stock_prediction --data prices/ --tickers msft

Writes ``<output>/metrics.json``, ``<output>/volatility_predictions.png`` and the last fold's
model in ``<output>/final``. Errors in the input (a file without a Close column, a non-positive
price, unsorted dates) exit with status 2 and one line naming the file, row and column.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

REQUIRED_COLUMNS = ("Date", "Open", "High", "Low", "Close", "Volume")
FEATURES = ("return", "gap", "intraday", "range", "rel_volume")
HORIZON = 5  # days of the volatility target
LEAKAGE_ACCURACY = 0.60


@dataclass
class Args:
    data: str
    tickers: List[str] = field(default_factory=lambda: ["msft", "aapl"])
    output: str = "runs/stock_prediction"
    window: int = 32
    test_starts: List[str] = field(default_factory=lambda: ["2014-01-01", "2016-01-01"])
    test_end: Optional[str] = None
    train_years: Optional[float] = None  # only the last N years before each split (None: all the past)
    method: str = "ts2vec"
    epochs: int = 1
    batch_size: int = 64
    embed_dim: int = 64
    depth: int = 5
    bootstrap: int = 1000
    block: int = 20
    seed: int = 0
    progress: bool = True


def parse_args(argv: Optional[List[str]] = None) -> Args:
    p = argparse.ArgumentParser(prog="stock_prediction", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a folder of <ticker>*.txt|csv files, or one CSV file")
    p.add_argument("--tickers", nargs="+", default=["msft", "aapl"],
                   help="file name prefixes inside --data (ignored for a single file)")
    p.add_argument("--output", default=Args.output)
    p.add_argument("--window", type=int, default=Args.window, help="days per input window")
    p.add_argument("--test-starts", nargs="+", default=["2014-01-01", "2016-01-01"],
                   help="walk-forward fold starts (YYYY-MM-DD); each fold tests until the next start")
    p.add_argument("--test-end", default=None, help="end of the last fold (default: end of data)")
    p.add_argument("--train-years", type=float, default=None, help="train on at most the last N years")
    p.add_argument("--method", default=Args.method)
    p.add_argument("--epochs", type=int, default=Args.epochs)
    p.add_argument("--batch-size", type=int, default=Args.batch_size)
    p.add_argument("--embed-dim", type=int, default=Args.embed_dim)
    p.add_argument("--depth", type=int, default=Args.depth, help="blocks of the dilated CNN encoder")
    p.add_argument("--bootstrap", type=int, default=Args.bootstrap, help="bootstrap resamples for the CIs")
    p.add_argument("--block", type=int, default=Args.block, help="block length (days) of the block bootstrap")
    p.add_argument("--seed", type=int, default=Args.seed)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.window < 2:
        p.error("--window must be >= 2")
    return Args(data=a.data, tickers=[t.lower() for t in a.tickers], output=a.output, window=a.window,
                test_starts=sorted(a.test_starts), test_end=a.test_end, train_years=a.train_years, method=a.method,
                epochs=a.epochs, batch_size=a.batch_size, embed_dim=a.embed_dim, depth=a.depth,
                bootstrap=a.bootstrap, block=a.block, seed=a.seed, progress=not a.no_progress)


# ------------------------------------------------------------------------------------ data
def read_ohlcv(path: Path) -> Dict[str, np.ndarray]:
    """Columns Date (datetime64[D]) and Open..Volume (float64) of one CSV; DataError naming the
    file, row and column on anything unusable."""
    from multissl.errors import DataError

    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not rows:
        raise DataError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path}: no {missing[0]} column (header: {','.join(header)}); "
                        f"need {','.join(REQUIRED_COLUMNS)}")
    col = {c: header.index(c) for c in REQUIRED_COLUMNS}
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if len(body) < 2:
        raise DataError(f"{path}: needs at least 2 rows of prices, has {len(body)}")
    out: Dict[str, Any] = {c: np.empty(len(body)) for c in REQUIRED_COLUMNS[1:]}
    dates = []
    for i, r in enumerate(body):
        line = i + 2  # 1-based, after the header
        if len(r) < len(header):
            raise DataError(f"{path}: row {line} has {len(r)} fields, the header has {len(header)}")
        try:
            dates.append(np.datetime64(r[col["Date"]].strip(), "D"))
        except ValueError:
            raise DataError(f"{path}: row {line}, column Date: not a YYYY-MM-DD date ({r[col['Date']]!r})") from None
        for c in REQUIRED_COLUMNS[1:]:
            try:
                v = float(r[col[c]])
            except ValueError:
                raise DataError(f"{path}: row {line}, column {c}: not a number ({r[col[c]]!r})") from None
            if not math.isfinite(v) or (v <= 0 if c != "Volume" else v < 0):
                raise DataError(f"{path}: row {line}, column {c}: {'negative' if c == 'Volume' else 'non-positive'} "
                                f"or non-finite value {v}")
            out[c][i] = v
    d = np.array(dates, dtype="datetime64[D]")
    bad = np.nonzero(d[1:] <= d[:-1])[0]
    if len(bad):
        raise DataError(f"{path}: row {int(bad[0]) + 3}, column Date: dates must increase ({d[bad[0]]} then {d[bad[0] + 1]})")
    out["Date"] = d
    return out


def find_files(data: str, tickers: List[str]) -> Dict[str, Path]:
    from multissl.errors import DataError

    p = Path(data)
    if p.is_file():
        return {p.name.split(".")[0].lower(): p}
    if not p.is_dir():
        raise DataError(f"{data}: no such file or folder")
    files = {}
    for t in tickers:
        match = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().split(".")[0] == t
                       and f.suffix.lower() in (".txt", ".csv"))
        if not match:
            raise DataError(f"{data}: no file for ticker {t!r} (expected {t}.csv or {t}.us.txt)")
        files[t] = match[0]
    return files


def daily_features(px: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Causal features (D, len(FEATURES)) from day 21 on (volume needs 20 prior days) and the log
    returns r (D,) of the same days. Everything on day t uses prices up to day t only."""
    o, h, lo, c, v = (px[k] for k in ("Open", "High", "Low", "Close", "Volume"))
    r = np.log(c[1:] / c[:-1])
    gap = np.log(o[1:] / c[:-1])
    intraday = np.log(c[1:] / o[1:])
    rng = np.log(h[1:] / lo[1:])
    logv = np.log1p(v)
    csum = np.concatenate([[0.0], np.cumsum(logv)])
    prev20 = (csum[20:-1] - csum[:-21]) / 20.0  # mean log volume of days t-20..t-1, for t = 20..
    rel_volume = logv[20:] - prev20
    start = 20  # first day with a full volume history; features of day t use indices t-1 of r etc.
    f = np.column_stack([r[start - 1:], gap[start - 1:], intraday[start - 1:], rng[start - 1:], rel_volume])
    return f.astype(np.float64), r[start - 1:]


def make_windows(dates: np.ndarray, feats: np.ndarray, r: np.ndarray, window: int) -> Dict[str, np.ndarray]:
    """Windows ending on day t (features of days t-window+1..t) with both targets, for every t
    that has ``HORIZON`` future days. ``target_end``: the date of the last day a target uses."""
    n = len(r)
    ends = np.arange(window - 1, n - HORIZON)
    idx = ends[:, None] + np.arange(-window + 1, 1)[None, :]
    x = feats[idx].transpose(0, 2, 1)  # (N, C, T) channels first
    future = r[ends[:, None] + np.arange(1, HORIZON + 1)[None, :]]
    past = r[ends[:, None] + np.arange(-HORIZON + 1, 1)[None, :]]
    sq = r ** 2
    cs = np.concatenate([[0.0], np.cumsum(sq)])

    def rv(k: int) -> np.ndarray:  # realised volatility of the k days ending on t, in %
        lo = np.maximum(ends - k + 1, 0)
        return 100 * np.sqrt((cs[ends + 1] - cs[lo]) * HORIZON / np.maximum(ends + 1 - lo, 1))

    return {
        "x": x.astype(np.float32),
        "start_date": dates[ends - window + 1], "end_date": dates[ends], "target_end": dates[ends + HORIZON],
        "direction": (r[ends + 1] > 0).astype(np.int64),
        "volatility": 100 * np.sqrt((future ** 2).sum(1)),
        "persist_direction": (r[ends] > 0).astype(np.int64),
        "persist_volatility": 100 * np.sqrt((past ** 2).sum(1)),
        "har": np.column_stack([rv(1), rv(5), rv(22)]),
    }


def split_fold(w: Dict[str, np.ndarray], start: np.datetime64, end: Optional[np.datetime64],
               train_years: Optional[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Train: windows whose targets end before ``start``. Test: windows that begin on or after
    ``start`` and whose targets end before ``end``. Nothing crosses the split date."""
    train = w["target_end"] < start
    if train_years:
        train &= w["start_date"] >= start - np.timedelta64(int(train_years * 365.25), "D")
    test = w["start_date"] >= start
    if end is not None:
        test &= w["target_end"] < end
    return np.nonzero(train)[0], np.nonzero(test)[0]


# ------------------------------------------------------------------------------------ metrics
def block_bootstrap(stat, arrays: List[np.ndarray], n: int, block: int, seed: int) -> Tuple[float, float]:
    """95% moving-block bootstrap interval of ``stat(*arrays)`` over time-ordered samples
    (blocks keep the serial dependence of daily data that an iid bootstrap would ignore)."""
    m = len(arrays[0])
    rng = np.random.default_rng(seed)
    block = max(1, min(block, m))
    k = int(math.ceil(m / block))
    vals = []
    for _ in range(n):
        starts = rng.integers(0, m - block + 1, size=k)
        idx = (starts[:, None] + np.arange(block)[None, :]).ravel()[:m]
        vals.append(stat(*[a[idx] for a in arrays]))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float((y == p).mean())


def mcc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(y, p)) if len(np.unique(y)) > 1 or len(np.unique(p)) > 1 else 0.0


def mse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((y - p) ** 2))


def score(kind: str, y: np.ndarray, p: np.ndarray, args: Args) -> Dict[str, Any]:
    if kind == "direction":
        out = {"accuracy": accuracy(y, p), "mcc": mcc(y, p)}
        out["accuracy_ci"] = block_bootstrap(accuracy, [y, p], args.bootstrap, args.block, args.seed)
        out["mcc_ci"] = block_bootstrap(mcc, [y, p], args.bootstrap, args.block, args.seed)
    else:
        out = {"mse": mse(y, p)}
        out["mse_ci"] = block_bootstrap(mse, [y, p], args.bootstrap, args.block, args.seed)
    return out


# ------------------------------------------------------------------------------------ models
def fit_direction(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray) -> np.ndarray:
    """Logistic regression, C by time-ordered 5-fold CV (each validation fold after its training)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    search = GridSearchCV(pipe, {"logisticregression__C": [1e-3, 1e-2, 1e-1, 1.0]}, cv=TimeSeriesSplit(5))
    return search.fit(xtr, ytr).predict(xte)


def fit_volatility(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray) -> np.ndarray:
    """Ridge regression on standardised inputs, alpha by time-ordered 5-fold CV."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import TimeSeriesSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13), cv=TimeSeriesSplit(5)))
    return reg.fit(xtr, ytr).predict(xte)


def lagged_features(w: Dict[str, np.ndarray], idx: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The window flattened (normalised with training statistics) plus the HAR volatility terms."""
    x = (w["x"][idx] - mean[None, :, None]) / std[None, :, None]
    return np.column_stack([x.reshape(len(idx), -1), w["har"][idx]])


# ------------------------------------------------------------------------------------ run
def run(args: Args) -> Dict[str, Any]:
    from multissl import pretrain
    from multissl.distributed import process_state
    from multissl.errors import DataError
    from multissl.evaluation.few_labels import write_json_atomic
    from multissl.trainer import embed_prepared

    t_start = time.perf_counter()
    state = process_state()  # under `accelerate launch`: every process pretrains, the main one reports
    say = print if state.is_main_process else (lambda *_: None)
    out_dir = Path(args.output)
    files = find_files(args.data, args.tickers)
    series: Dict[str, Dict[str, np.ndarray]] = {}
    for t, path in files.items():
        px = read_ohlcv(path)
        feats, r = daily_features(px)
        dates = px["Date"][20:]
        if len(r) < args.window + HORIZON + 1:
            raise DataError(f"{path}: {len(px['Date'])} rows are too few for --window {args.window}")
        series[t] = make_windows(dates, feats, r, args.window)
        say(f"{t}: {len(px['Date'])} days {px['Date'][0]} .. {px['Date'][-1]} -> {len(series[t]['x'])} windows")
    starts = [np.datetime64(s, "D") for s in args.test_starts]
    ends = starts[1:] + [np.datetime64(args.test_end, "D") if args.test_end else None]

    results: Dict[str, Any] = {t: {"folds": []} for t in series}
    preds_for_plot: Dict[str, Dict[str, np.ndarray]] = {}
    model = None
    for fold, (start, end) in enumerate(zip(starts, ends)):
        splits = {t: split_fold(w, start, end, args.train_years) for t, w in series.items()}
        for t, (tr, te) in splits.items():
            if len(tr) < 50 or len(te) < 20:
                raise DataError(f"{files[t]}: fold starting {start} has {len(tr)} training and {len(te)} test windows; "
                                "choose --test-starts inside the data")
            # the split guarantee, checked rather than assumed
            assert series[t]["target_end"][tr].max() < start <= series[t]["start_date"][te].min()
        # SSL on the unlabeled training windows of every ticker (the past only)
        unlabeled = np.concatenate([series[t]["x"][tr] for t, (tr, _) in splits.items()])
        say(f"fold {fold + 1}: test from {start}{' to ' + str(end) if end is not None else ''}; "
              f"pretraining {args.method} on {len(unlabeled)} unlabeled windows")
        model = pretrain(unlabeled, adapter="timeseries", method=args.method, epochs=args.epochs,
                         batch_size=args.batch_size, seed=args.seed + fold, progress=args.progress,
                         encoder_kwargs={"width": 32, "depth": args.depth, "embed_dim": args.embed_dim},
                         adapter_config={"normalize": "channel"}, mixed_precision="no")
        if not state.is_main_process:  # the probes are cheap next to pretraining: the main process fits them
            continue
        ad = model.adapter  # its normalisation statistics were fitted on the training windows only
        mean, std = np.array(ad.config["channel_mean"]), np.array(ad.config["channel_std"])
        for t, (tr, te) in splits.items():
            w = series[t]
            z = {k: embed_prepared(model.encoder, ad, ad.prepare(w["x"][i])).numpy() for k, i in (("tr", tr), ("te", te))}
            lag_tr, lag_te = lagged_features(w, tr, mean, std), lagged_features(w, te, mean, std)
            y_dir, y_vol = w["direction"][te], w["volatility"][te]
            majority = int(np.bincount(w["direction"][tr]).argmax())
            preds = {
                "direction": {
                    "ssl_logistic": fit_direction(z["tr"], w["direction"][tr], z["te"]),
                    "lagged_logistic": fit_direction(lag_tr, w["direction"][tr], lag_te),
                    "persistence": w["persist_direction"][te],
                    "historical_majority": np.full(len(te), majority),
                },
                "volatility": {
                    "ssl_ridge": fit_volatility(z["tr"], w["volatility"][tr], z["te"]),
                    "lagged_ridge": fit_volatility(lag_tr, w["volatility"][tr], lag_te),
                    "persistence": w["persist_volatility"][te],
                    "historical_mean": np.full(len(te), float(w["volatility"][tr].mean())),
                },
            }
            fold_res = {"test_start": str(start), "test_end": str(w["end_date"][te].max()), "train_windows": int(len(tr)),
                        "test_windows": int(len(te)), "test_up_fraction": float(y_dir.mean()),
                        "direction": {k: score("direction", y_dir, p, args) for k, p in preds["direction"].items()},
                        "volatility": {k: score("volatility", y_vol, p, args) for k, p in preds["volatility"].items()}}
            results[t]["folds"].append(fold_res)
            d, v = fold_res["direction"], fold_res["volatility"]
            print(f"  {t}: direction acc SSL {d['ssl_logistic']['accuracy']:.3f} / lagged {d['lagged_logistic']['accuracy']:.3f}"
                  f" / persistence {d['persistence']['accuracy']:.3f}; vol MSE SSL {v['ssl_ridge']['mse']:.3f} / lagged "
                  f"{v['lagged_ridge']['mse']:.3f} / persistence {v['persistence']['mse']:.3f} / mean {v['historical_mean']['mse']:.3f}")
            plot = preds_for_plot.setdefault(t, {"date": [], "truth": [], "ssl_ridge": [], "persistence": [], "lagged_ridge": []})
            plot["date"].append(w["end_date"][te])
            plot["truth"].append(y_vol)
            for k in ("ssl_ridge", "persistence", "lagged_ridge"):
                plot[k].append(preds["volatility"][k])

    if not state.is_main_process:
        state.wait_for_everyone()
        return {}
    # pooled over folds: every test day once
    summary: Dict[str, Any] = {}
    alarms = []
    for t, res in results.items():
        summary[t] = {}
        for kind, metric in (("direction", "accuracy"), ("volatility", "mse")):
            for name in res["folds"][0][kind]:
                vals = [f[kind][name][metric] for f in res["folds"]]
                weights = [f["test_windows"] for f in res["folds"]]
                summary[t][f"{kind}/{name}/{metric}"] = float(np.average(vals, weights=weights))
                if kind == "direction":
                    for f in res["folds"]:
                        if f[kind][name]["accuracy"] > LEAKAGE_ACCURACY:
                            alarms.append(f"{t} fold {f['test_start']} {name}: accuracy {f[kind][name]['accuracy']:.3f}")
        summary[t]["ssl_volatility_mse_below_persistence"] = (
            summary[t]["volatility/ssl_ridge/mse"] < summary[t]["volatility/persistence/mse"])
    leakage = {"threshold": LEAKAGE_ACCURACY, "passed": not alarms, "alarms": alarms}
    print()
    header = f"{'ticker':<7}{'SSL acc':>9}{'lag acc':>9}{'pers acc':>9}{'SSL vol MSE':>13}{'lag MSE':>9}{'pers MSE':>10}{'mean MSE':>10}"
    print(header + "\n" + "-" * len(header))
    for t, s in summary.items():
        print(f"{t:<7}{s['direction/ssl_logistic/accuracy']:>9.3f}{s['direction/lagged_logistic/accuracy']:>9.3f}"
              f"{s['direction/persistence/accuracy']:>9.3f}{s['volatility/ssl_ridge/mse']:>13.3f}"
              f"{s['volatility/lagged_ridge/mse']:>9.3f}{s['volatility/persistence/mse']:>10.3f}"
              f"{s['volatility/historical_mean/mse']:>10.3f}")
    print(f"\nleakage check (direction accuracy <= {LEAKAGE_ACCURACY:.0%}): "
          + ("passed" if leakage["passed"] else "ALARM: " + "; ".join(alarms)))

    metrics = {"recipe": "stock_prediction", "args": asdict(args), "features": list(FEATURES), "horizon_days": HORIZON,
               "files": {t: str(p) for t, p in files.items()}, "summary": summary, "leakage_check": leakage,
               "results": results, "total_seconds": round(time.perf_counter() - t_start, 1)}
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_predictions(preds_for_plot, out_dir / "volatility_predictions.png")
    if model is not None:
        model.save_pretrained(out_dir / "final")
    write_json_atomic(out_dir / "metrics.json", metrics)
    print(f"wrote {out_dir / 'metrics.json'}, {out_dir / 'volatility_predictions.png'} ({metrics['total_seconds']:.0f} s)")
    state.wait_for_everyone()
    return metrics


def plot_predictions(preds: Dict[str, Dict[str, List[np.ndarray]]], path: Path) -> None:
    """Next-5-day realised volatility vs the SSL, lagged-ridge and persistence predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(preds), 1, figsize=(10, 3.2 * len(preds)), squeeze=False)
    def joined(parts: List[np.ndarray]) -> np.ndarray:
        # a NaN after each fold: no line across the untested days between folds
        return np.concatenate([np.append(np.asarray(a, dtype=float), np.nan) for a in parts])

    for ax, (t, p) in zip(axes[:, 0], preds.items()):
        d = np.concatenate([np.append(a, a[-1]) for a in p["date"]]).astype("datetime64[D]").astype(object)
        ax.plot(d, joined(p["truth"]), color="0.6", lw=0.8, label="realised (truth)")
        ax.plot(d, joined(p["persistence"]), lw=0.8, alpha=0.7, label="persistence")
        ax.plot(d, joined(p["lagged_ridge"]), lw=1.0, label="ridge on lagged features")
        ax.plot(d, joined(p["ssl_ridge"]), lw=1.2, label="ridge on SSL embedding")
        ax.set_title(f"{t.upper()}: next-5-day realised volatility (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: Optional[List[str]] = None) -> int:
    from multissl.errors import exit_status

    def job() -> None:
        args = parse_args(argv)  # before importing torch: --help stays quick

        import torch

        # small convolutions: one thread is fastest on a shared CPU (MULTISSL_THREADS to change)
        torch.set_num_threads(int(os.environ.get("MULTISSL_THREADS", "1")))
        run(args)

    return exit_status("stock_prediction", job)


if __name__ == "__main__":
    sys.exit(main())
