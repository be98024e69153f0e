"""Run a script or module under ``accelerate launch --multi_gpu --num_processes 2`` on the CPU
(one gloo group of two local processes, how every multi-process test here runs)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Union

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free right now, for the rendezvous of one launch: tests that run side by side
    (pytest-xdist) must not share accelerate's default port 29500."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two(*args: Union[str, Path], timeout: float = 300) -> subprocess.CompletedProcess:
    """``accelerate launch`` with 2 CPU processes of ``args`` (a script path and its arguments,
    or ``-m module ...``), one torch thread each, from the repository root; asserts that it
    exited 0 (showing the end of both outputs if not)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
           "--dynamo_backend", "no", *map(str, args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, f"2-process run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc
