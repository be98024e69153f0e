"""Crash safety with a real SIGKILL: pretraining runs in a child process that is killed between
checkpoints and in the middle of writing one; the resumed run never loads a torn checkpoint,
loses at most one checkpoint interval, and ends with exactly the weights of an uninterrupted run.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]

# The child: a deterministic run of the toy method, one checkpoint per step. MODE=slow sleeps
# after every step (to be killed between checkpoints); MODE=torn sleeps inside the checkpoint
# write of step 4, after Accelerate wrote the weights but before the folder is renamed, and
# drops a marker file so the parent knows when to kill.
CHILD = r"""
import os, sys, time
import torch
sys.path.insert(0, os.environ["ROOT"])
from multissl.trainer import TrainConfig, Trainer
from tests.toy import ToyMethod, VectorAdapter, toy_data

out, mode = sys.argv[1], sys.argv[2]
adapter = VectorAdapter()
data = adapter.prepare(toy_data(64))
adapter.fit(data)
torch.manual_seed(0)
method = ToyMethod(adapter.build_encoder(), 8)
cfg = TrainConfig(epochs=3, batch_size=16, seed=0, progress=False, output_dir=out, checkpoint_every=1,
                  keep_checkpoints=3, resume=(mode == "resume"))
trainer = Trainer(method, adapter, cfg)
if mode in ("slow", "torn"):
    original_step_end = method.on_train_step_end
    def slow_step_end(progress):
        original_step_end(progress)
        time.sleep(0.3)
    method.on_train_step_end = slow_step_end
if mode == "torn":
    import accelerate
    original_save = accelerate.Accelerator.save_state
    def save_then_hang(self, output_dir=None, **kw):
        result = original_save(self, output_dir, **kw)
        if output_dir.endswith("step_00000004"):
            open(os.path.join(out, "IN_SAVE"), "w").close()
            time.sleep(60)
        return result
    accelerate.Accelerator.save_state = save_then_hang
trainer.fit(data)
from safetensors.torch import save_file
save_file({k: v.contiguous() for k, v in method.encoder.state_dict().items()}, os.path.join(out, "final.safetensors"))
print("DONE", flush=True)
"""


def _start(out: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "ROOT": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(out), mode], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"child ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the child")
        time.sleep(0.02)


def _finish(out: Path, mode: str) -> dict:
    proc = _start(out, mode)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "DONE" in stdout, stderr[-3000:]
    return load_file(str(out / "final.safetensors"))


def _checkpoints(out: Path) -> list:
    root = out / "checkpoints"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return _finish(tmp_path_factory.mktemp("full"), "plain")


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_sigkill_between_checkpoints_then_resume_matches(uninterrupted, tmp_path):
    out = tmp_path / "run"
    proc = _start(out, "slow")
    _wait_for(lambda: "step_00000005" in _checkpoints(out), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [c for c in _checkpoints(out) if c.startswith("step_")]
    assert done and int(done[-1][5:]) >= 5  # at most the interval in progress is lost
    _same(_finish(out, "resume"), uninterrupted)


def test_sigkill_while_writing_a_checkpoint_never_loads_it(uninterrupted, tmp_path):
    out = tmp_path / "run"
    proc = _start(out, "torn")
    _wait_for(lambda: (out / "IN_SAVE").exists(), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    names = _checkpoints(out)
    # the half-written save is only a temporary folder; the last complete one is step 3
    assert ".tmp-step_00000004" in names and "step_00000004" not in names
    assert [n for n in names if n.startswith("step_")][-1] == "step_00000003"
    final = _finish(out, "resume")
    _same(final, uninterrupted)
    names = _checkpoints(out)
    assert ".tmp-step_00000004" not in names  # cleaned up by the resumed run's save of step 4
    assert [n for n in names if n.startswith("step_")] == ["step_00000010", "step_00000011", "step_00000012"]
