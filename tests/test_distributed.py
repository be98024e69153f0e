"""multissl.distributed: single-process behaviour, and 2-process DDP == 1 process.

The DDP test launches tests/ddp_equivalence_script.py with ``accelerate launch`` on two CPU
processes (gloo). ``--multi_gpu`` selects accelerate's torchrun launcher, the one that starts
several local processes without MPI (its ``--cpu`` launcher needs mpirun for more than one
process); the script's ``Accelerator(cpu=True)`` keeps both processes on the CPU, GPU or not.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from multissl import distributed
from tests.launch import launch_two

SCRIPT = Path(__file__).with_name("ddp_equivalence_script.py")
TOLERANCE = 1e-5


def test_not_distributed_defaults() -> None:
    assert distributed.world_size() == 1
    assert distributed.rank() == 0
    assert not distributed.is_distributed()


def test_gather_is_identity_when_not_distributed() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    assert distributed.gather(x) is x
    y, offset = distributed.gather_with_offset(x)
    assert y is x and offset == 0


EXIT_CHECK = """
import atexit, sys
import torch.distributed as dist
# registered before multissl's handler, so it runs after it (atexit is last-in, first-out)
atexit.register(lambda: print("initialized at exit:", dist.is_initialized(), flush=True))
import multissl.distributed
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
dist.all_reduce(__import__("torch").ones(2))
"""


def test_process_group_is_destroyed_at_exit(tmp_path: Path) -> None:
    """A gloo group left alive at exit can abort the process (SIGABRT, seen in CI); importing
    multissl.distributed destroys it from an atexit handler before the interpreter shuts down."""
    proc = subprocess.run([sys.executable, "-c", EXIT_CHECK, str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "initialized at exit: False" in proc.stdout, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ddp") / "results.json"
    launch_two(SCRIPT, "--out", out, timeout=240)
    return json.loads(out.read_text())


@pytest.mark.parametrize("loss", ["nt_xent", "barlow_twins", "vicreg", "vibcreg", "info_nce"])
def test_two_process_ddp_matches_single_process(ddp_results: dict, loss: str) -> None:
    result = ddp_results["correct"][loss]
    assert result["loss_err"] < TOLERANCE, result
    assert result["grad_err"] < TOLERANCE, result


def test_gather_with_uneven_batches(ddp_results: dict) -> None:
    assert ddp_results["correct"]["uneven_gather"]["grad_err"] < TOLERANCE


@pytest.mark.parametrize("loss", ["nt_xent", "barlow_twins", "vicreg", "vibcreg", "info_nce"])
def test_gather_without_allreduce_is_caught(ddp_results: dict, loss: str) -> None:
    """Negative control: the forward value is unaffected, the gradients are clearly wrong,
    so the equivalence test above would fail on a gather without the all-reduce."""
    result = ddp_results["no_allreduce"][loss]
    assert result["loss_err"] < TOLERANCE
    assert result["grad_err"] > 100 * TOLERANCE, result
