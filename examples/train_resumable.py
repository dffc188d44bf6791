"""A small training job that survives faults: it checkpoints, and a restart resumes right after
its last checkpoint, so no checkpointed step is lost or repeated.

CPU only, plain Python: fits y = 3x - 2 with SGD on a synthetic data stream. Run it under
gpucloud (it reads $GPUCLOUD_CHECKPOINT_DIR and $GPUCLOUD_RESTART_COUNT):

    gpucloud run --gpus 1 -- python examples/train_resumable.py --steps 200 --every 10

The protocol, in three lines:
  1. on start, load the newest checkpoint under $GPUCLOUD_CHECKPOINT_DIR, if there is one;
  2. write each checkpoint to a temporary file and rename it into place (never half-written);
  3. then call gpucloud.checkpoint_done(step): the platform watches that, resets the job's
     restart budget, and credits the tenant for work lost after it.

Each finished step is appended to steps.log beside the checkpoint ("restart step"), which
bench/recovery.py reads to count steps lost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

from gpucloud import checkpoint_done


def load(path: Path) -> tuple[int, float, float]:
    """(last step done, w, b), or (-1, 0, 0) on a first start."""
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return -1, 0.0, 0.0
    return int(state["step"]), float(state["w"]), float(state["b"])


def save(path: Path, step: int, w: float, b: float) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as handle:
        json.dump({"step": step, "w": w, "b": b}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)  # atomic: a crash leaves the old checkpoint or the new, never half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=10, help="checkpoint every N steps")
    parser.add_argument("--step-seconds", type=float, default=0.1, help="work per step")
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    directory = Path(os.environ.get("GPUCLOUD_CHECKPOINT_DIR", "checkpoints"))
    directory.mkdir(parents=True, exist_ok=True)
    restart = int(os.environ.get("GPUCLOUD_RESTART_COUNT", "0"))
    checkpoint = directory / "model.json"
    done, w, b = load(checkpoint)
    if done >= 0:
        print(f"restart {restart}: resumed from the checkpoint of step {done}", flush=True)
    steps_log = (directory / "steps.log").open("a")
    for step in range(done + 1, args.steps):
        rng = random.Random(step)  # the data of a step depends on the step only
        x = rng.uniform(-1, 1)
        y = 3 * x - 2 + rng.gauss(0, 0.01)
        error = w * x + b - y
        w -= args.lr * error * x
        b -= args.lr * error
        time.sleep(args.step_seconds)
        steps_log.write(f"{restart} {step}\n")
        steps_log.flush()
        print(f"step {step} loss {error * error:.6f}", flush=True)
        if (step + 1) % args.every == 0 or step == args.steps - 1:
            save(checkpoint, step, w, b)
            checkpoint_done(step)
    print(f"done: w={w:.3f} b={b:.3f}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
