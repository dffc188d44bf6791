"""An interactive shell inside a running launch: a job step that overlaps the launch's own.

``srun --jobid J --overlap --pty`` runs on the launch's node, inside its allocation (its GPUs:
Slurm gives a step the job's GRES), with a pty there relayed to the caller's terminal. The step
loads rank 0's environment file, as the task does, and starts in the instance's HOME. Pure:
the command line only.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from gpucloud.engines.slurm.script import NOT_IN_LAUNCH_EXIT

# A shell in an image stays non-login, so /etc/profile does not reset the image's PATH (as on
# the local engine); without one it is a login shell.
_STEP_SCRIPT = """. {env} || exit {not_in_launch}
cd "${{HOME:-{run}}}" 2>/dev/null || cd {run}
if [ -n "${{VIRTUAL_ENV:-}}" ]; then exec /bin/bash -i; else exec /bin/bash -l; fi
"""


def shell_argv(job_id: int, env_file: Path) -> list[str]:
    script = _STEP_SCRIPT.format(env=shlex.quote(str(env_file)),
                                 run=shlex.quote(str(env_file.parent)),
                                 not_in_launch=NOT_IN_LAUNCH_EXIT)
    return [
        "srun", f"--jobid={job_id}", "--overlap", "--pty",
        "--nodes=1", "--ntasks=1", "--quiet", "--export=ALL",
        "/bin/bash", "-c", script,
    ]
