"""One way for the fine-tuning tests to launch ``torchrun``: two CPU processes, in their own session, so
that a run that hangs past its bound is killed with all its workers (a plain ``subprocess.run`` timeout
kills torchrun alone and leaves the workers behind, holding the cores)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = ["-m", "inference_server.cli"]
# One torchrun start costs 10-25 s on the shared 2 cores; a hang would be a failure, so the bound is
# generous for the machine but far below the process group's 600 s timeout.
BOUND_S = 240


def torchrun(target: list[str], args: list[str], *launch: str, nproc: int = 2,
             bound_s: float = BOUND_S) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node NPROC LAUNCH... TARGET ARGS`` on the CPU; its output, and
    every process of the run killed if it is still going after ``bound_s`` (then TimeoutExpired)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *launch,
           *target, *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=bound_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def our_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The CLI's own failure lines (torchrun's agent adds its report, which is not ours)."""
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error: ")]
