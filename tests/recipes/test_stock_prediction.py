"""stock_prediction recipe: reader errors, causal features, the walk-forward split, metrics, end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from multissl.errors import DataError
from multissl.recipes import available_recipes
from multissl.recipes import stock_prediction as sp

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "stock_prediction.py"
SHARED = Path("/work/shared/data/stocks_daily_ohlcv")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write_prices(path: Path, days: int = 700, seed: int = 0, header: str = "Date,Open,High,Low,Close,Volume,OpenInt",
                 start: str = "2010-01-04") -> Path:
    """A GARCH-like random walk on business days, in the Kaggle/stooq layout."""
    rng = np.random.default_rng(seed)
    dates = np.busday_offset(np.datetime64(start, "D"), np.arange(days), roll="forward")
    vol = np.empty(days)
    vol[0] = 0.01
    r = np.empty(days)
    for t in range(days):
        if t:
            vol[t] = np.sqrt(1e-6 + 0.1 * r[t - 1] ** 2 + 0.85 * vol[t - 1] ** 2)
        r[t] = vol[t] * rng.standard_normal()
    close = 50 * np.exp(np.cumsum(r))
    open_ = close * np.exp(rng.normal(0, 0.003, days))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, vol)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, vol)))
    volume = rng.integers(1e5, 1e6, days)
    lines = [header] + [f"{d},{o:.4f},{h:.4f},{lo:.4f},{c:.4f},{v},0" for d, o, h, lo, c, v in
                        zip(dates, open_, high, low, close, volume)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_listed_with_its_docstring():
    assert available_recipes()["stock_prediction"].startswith("Stock prediction")


def test_reader_parses_and_validates(tmp_path):
    px = sp.read_ohlcv(write_prices(tmp_path / "abc.us.txt", days=30))
    assert px["Date"].dtype == np.dtype("datetime64[D]") and len(px["Close"]) == 30


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("Close", "Last", 1), r"no Close column"),
    (lambda s: s.replace(",", ";"), r"no Date column"),
    (lambda s: "\n".join(s.splitlines()[:1] + [s.splitlines()[1].replace(s.splitlines()[1].split(",")[4], "-3", 1)]
                         + s.splitlines()[2:]), r"row 2, column \w+: non-positive"),
    (lambda s: s.replace(s.splitlines()[3].split(",")[0], "yesterday", 1), r"row 4, column Date: not a YYYY-MM-DD"),
    (lambda s: "\n".join(s.splitlines()[:3] + [s.splitlines()[2]] + s.splitlines()[3:]), r"row 4, column Date: dates must increase"),
    (lambda s: s.replace(s.splitlines()[5].split(",")[5], "many", 1), r"row 6, column Volume: not a number"),
])
def test_bad_files_raise_data_error_naming_file_row_and_column(tmp_path, edit, message):
    path = write_prices(tmp_path / "bad.csv", days=30)
    path.write_text(edit(path.read_text()))
    with pytest.raises(DataError, match=message) as e:
        sp.read_ohlcv(path)
    assert "bad.csv" in str(e.value)


def test_features_are_causal():
    """Changing prices after day t never changes the features of days <= t."""
    rng = np.random.default_rng(0)
    n = 80
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    px = {"Open": c * 1.001, "High": c * 1.01, "Low": c * 0.99, "Close": c, "Volume": rng.uniform(1e5, 2e5, n)}
    f, r = sp.daily_features(px)
    future = {k: v.copy() for k, v in px.items()}
    for k in future:
        future[k][50:] *= 3.0
    f2, r2 = sp.daily_features(future)
    day = 49 - 20  # feature row of price day 49
    assert np.allclose(f[: day + 1], f2[: day + 1]) and np.allclose(r[: day + 1], r2[: day + 1])
    assert not np.allclose(f[day + 1], f2[day + 1])
    assert np.isclose(r[0], np.log(c[20] / c[19]))


def test_windows_targets_and_split_never_cross_the_date():
    rng = np.random.default_rng(1)
    n = 300
    dates = np.datetime64("2015-01-01") + np.arange(n)
    r = rng.normal(0, 0.01, n)
    feats = np.column_stack([r] * 5)
    w = sp.make_windows(dates, feats, r, window=10)
    i = 7  # window ending on day 16
    assert w["end_date"][i] == dates[16] and w["start_date"][i] == dates[7]
    assert np.allclose(w["x"][i, 0], r[7:17])
    assert w["direction"][i] == int(r[17] > 0)
    assert np.isclose(w["volatility"][i], 100 * np.sqrt((r[17:22] ** 2).sum()))
    assert np.isclose(w["persist_volatility"][i], 100 * np.sqrt((r[12:17] ** 2).sum()))
    start = np.datetime64("2015-06-01")
    tr, te = sp.split_fold(w, start, None, None)
    assert w["target_end"][tr].max() < start <= w["start_date"][te].min()
    assert len(tr) and len(te)


def test_block_bootstrap_interval_covers_the_statistic():
    y = np.random.default_rng(0).normal(size=400)
    lo, hi = sp.block_bootstrap(lambda a: float(a.mean()), [y], 300, 20, 0)
    assert lo < y.mean() < hi and hi - lo < 0.5


def test_end_to_end_writes_metrics_plot_and_model(tmp_path, capsys):
    data = tmp_path / "prices"
    data.mkdir()
    write_prices(data / "aaa.us.txt", days=620, seed=1)
    write_prices(data / "bbb.csv", days=620, seed=2)
    out = tmp_path / "run"
    argv = ["--data", str(data), "--tickers", "aaa", "bbb", "--window", "16", "--test-starts", "2011-06-01",
            "2012-01-02", "--epochs", "1", "--batch-size", "32", "--embed-dim", "16", "--depth", "2",
            "--bootstrap", "50", "--output", str(out), "--no-progress"]
    assert sp.main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["summary"]) == {"aaa", "bbb"} and len(m["results"]["aaa"]["folds"]) == 2
    fold = m["results"]["aaa"]["folds"][0]
    for name in ("ssl_logistic", "lagged_logistic", "persistence", "historical_majority"):
        d = fold["direction"][name]
        assert 0 <= d["accuracy"] <= 1 and d["accuracy_ci"][0] <= d["accuracy_ci"][1]
    for name in ("ssl_ridge", "lagged_ridge", "persistence", "historical_mean"):
        assert fold["volatility"][name]["mse"] > 0
    # random-walk directions are unpredictable: the leakage check must pass on them
    assert m["leakage_check"]["passed"], m["leakage_check"]
    assert (out / "volatility_predictions.png").stat().st_size > 1000
    assert (out / "final" / "model.safetensors").is_file()
    assert "leakage check" in capsys.readouterr().out


def test_leakage_check_flags_a_leaky_feature(tmp_path, monkeypatch):
    """A feature that peeks at tomorrow's return must trip the alarm."""
    data = tmp_path / "prices"
    data.mkdir()
    write_prices(data / "aaa.csv", days=500, seed=3)
    real = sp.make_windows

    def leaky(dates, feats, r, window):
        w = real(dates, feats, r, window)
        w["har"] = np.column_stack([w["har"], np.where(w["direction"] == 1, 1.0, -1.0)])  # tomorrow's sign
        return w

    monkeypatch.setattr(sp, "make_windows", leaky)
    out = tmp_path / "run"
    assert sp.main(["--data", str(data), "--tickers", "aaa", "--window", "16", "--test-starts", "2011-06-01",
                    "--epochs", "1", "--batch-size", "32", "--embed-dim", "8", "--depth", "1", "--bootstrap", "20",
                    "--output", str(out), "--no-progress"]) == 0
    check = json.loads((out / "metrics.json").read_text())["leakage_check"]
    assert not check["passed"] and any("lagged_logistic" in a for a in check["alarms"])


def test_user_errors_exit_2_with_one_line(tmp_path):
    data = tmp_path / "prices"
    data.mkdir()
    bad = write_prices(data / "aaa.csv", days=40)
    bad.write_text(bad.read_text().replace("Close", "Adj", 1))
    proc = subprocess.run([sys.executable, str(RECIPE), "--data", str(data), "--tickers", "aaa", "--output",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "aaa.csv: no Close column" in proc.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()
    missing = subprocess.run([sys.executable, str(RECIPE), "--data", str(data), "--tickers", "zzz"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no file for ticker 'zzz'" in missing.stderr


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared stock data not present")
def test_reads_the_real_files():
    px = sp.read_ohlcv(SHARED / "msft.us.txt")
    assert len(px["Date"]) == 7983 and str(px["Date"][0]) == "1986-03-13"
