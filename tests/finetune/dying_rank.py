"""Test-only launcher: ``step1x3d``'s own CLI, except that one rank dies at one step.

    torchrun ... tests/finetune/dying_rank.py RANK STEP raise|exit|blind  finetune geometry ...

It wraps the trainer's per-sample draw (the first thing a step does with the data) so that rank
``RANK`` fails when it reaches step ``STEP``: ``raise`` as a bad sample file would (an OSError
through the trainer's own error path), ``exit`` as a process killed outright (``os._exit``: no
Python cleanup, no message, sockets closed by the OS, as after an OOM kill). It dies in torchrun's
first attempt only, so a run launched with ``--max-restarts`` recovers in its next one. ``blind``
instead makes rank ``RANK`` see no checkpoint (as a node that does not share ``--out`` would). Production
code has no hook for this; the test launches this file instead of ``-m inference_server.cli``.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def main() -> int:
    die_rank, die_step, how = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    from inference_server.cli import main as cli_main
    from inference_server.finetune import run
    from inference_server.finetune.geometry import trainer

    if how == "blind" and int(os.environ.get("RANK", "0")) == die_rank:
        run.load_latest = lambda _out: None  # type: ignore[assignment]

    real = trainer.draw_sample

    def draw(*args: Any, **kwargs: Any) -> Any:
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        if kwargs["step"] == die_step and int(os.environ.get("RANK", "0")) == die_rank and first_attempt:
            if how == "exit":
                os._exit(3)
            raise OSError(f"simulated unreadable sample on rank {die_rank}")
        return real(*args, **kwargs)

    trainer.draw_sample = draw  # type: ignore[assignment]
    return cli_main(sys.argv[4:])


if __name__ == "__main__":
    sys.exit(main())
