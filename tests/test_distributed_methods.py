"""Every Siamese and masked method: a 2-process DDP run equals the 1-process run on the same
global batch (loss, every gradient, and after two steps the weights, EMA teachers and running
statistics), with the model converted the way the trainer converts it (SyncBatchNorm).

One ``accelerate launch`` of tests/ddp_methods_script.py (two CPU processes, gloo; see that
script for what is compared and why the masks are patched) serves the whole module. The
negative controls show the comparison catches the bugs it exists for: plain BatchNorm under DDP
(every Siamese method here has BatchNorm), ts2vec contrasting each process's own series, and a
per-process mean over hidden tokens (masked methods, rows of different lengths).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.launch import launch_two

SCRIPT = Path(__file__).with_name("ddp_methods_script.py")
TOLERANCE = 1e-5
SIAMESE = ["simclr", "moco", "byol", "simsiam", "barlowtwins", "vicreg", "vibcreg", "ts2vec"]
MASKED = ["mae", "data2vec"]
EMA_TEACHERS = ["moco", "byol", "data2vec"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ddp_methods") / "results.json"
    launch_two(SCRIPT, "--out", out, timeout=240)
    return json.loads(out.read_text())


@pytest.mark.parametrize("method", SIAMESE + MASKED)
def test_two_processes_equal_one_process(results: dict, method: str) -> None:
    r = results["synced"][method]
    for step in (0, 1):  # step 1 runs after an optimiser step, the EMA update and BN updates
        assert r[f"loss_err_{step}"] < TOLERANCE, r
        assert r[f"grad_err_{step}"] < TOLERANCE, r
        assert r[f"grad_scale_{step}"] > 1e-2, r  # gradients that are not all ~0
    assert r["state_err"] < TOLERANCE, r  # weights, teachers, running statistics after 2 steps


@pytest.mark.parametrize("method", SIAMESE)
def test_batchnorm_statistics_are_covered(results: dict, method: str) -> None:
    assert results["synced"][method]["running_stats_moved"] > 1e-2


@pytest.mark.parametrize("method", EMA_TEACHERS)
def test_ema_teacher_is_covered(results: dict, method: str) -> None:
    """The teacher moved between the steps, so step 1 compares teacher-dependent losses."""
    assert results["synced"][method]["teacher_moved"] > 1e-3


@pytest.mark.parametrize("method", SIAMESE)
def test_plain_batchnorm_under_ddp_differs(results: dict, method: str) -> None:
    r = results["no_sync"][method]
    assert r["grad_err_0"] > 100 * TOLERANCE, r


def test_ts2vec_without_gathering_differs(results: dict) -> None:
    r = results["no_gather"]["ts2vec"]
    assert r["loss_err_0"] > 100 * TOLERANCE and r["grad_err_0"] > 100 * TOLERANCE, r


@pytest.mark.parametrize("method", MASKED)
def test_per_process_token_mean_differs(results: dict, method: str) -> None:
    r = results["local_mean"][method]
    assert r["loss_err_0"] > 100 * TOLERANCE and r["grad_err_0"] > 100 * TOLERANCE, r


def test_sync_batchnorm_with_uneven_batches(results: dict) -> None:
    r = results["syncbn_uneven"]
    assert max(r.values()) < 1e-10, r
