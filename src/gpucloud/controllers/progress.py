"""Watches running jobs' checkpoint reports (``gpucloud.checkpoint_done``): records each new
step on the job's timeline, and a new checkpoint resets its restart budget (it made progress)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from gpucloud.checkpoints import Progress, read_progress
from gpucloud.controllers.context import Context
from gpucloud.core.states import JobState
from gpucloud.store.models import Job
from gpucloud.store.transitions import record_event


class ProgressController:
    name = "progress"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def reconcile_once(self) -> None:
        with self.ctx.db.read() as session:
            running = list(session.execute(
                select(Job.id, Job.last_checkpoint_step).where(Job.state == JobState.RUNNING)
            ))
        for job_id, known in running:
            progress = read_progress(self.ctx.engine.checkpoint_dir(job_id))
            if progress is not None and (known is None or progress.step > known):
                self._record(job_id, progress)

    def _record(self, job_id: str, progress: Progress) -> None:
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session:
            job = session.get(Job, job_id)
            if job is None or (job.last_checkpoint_step is not None
                               and progress.step <= job.last_checkpoint_step):
                return
            job.last_checkpoint_step = progress.step
            # The job's clock may differ from ours; never in the future of this pass.
            job.last_checkpoint_at = min(progress.at, now) if _aware(progress.at) else now
            job.restarts_since_progress = 0
            record_event(session, at=now, object_kind="job", object_id=job.id,
                         kind="job.checkpoint", tenant_id=job.tenant_id,
                         message=f"checkpoint at step {progress.step}")


def _aware(at: datetime) -> bool:
    return at.tzinfo is not None
