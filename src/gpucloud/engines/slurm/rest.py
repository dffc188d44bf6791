"""SlurmApi over slurmrestd (JWT auth, OpenAPI v0.0.38 as in Slurm 22.05).

Two gaps of v0.0.38, measured on 22.05.8: the documented ``required_nodes`` key of job/submit
is refused ("Disabled key"), while its parser's own name ``nodelist`` pins the node list; and
there is no node update at all, so drain/resume go to the Slurm CLI (``node_admin``) when one is
configured, and fail with a clear message otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from gpucloud.core.errors import EngineError
from gpucloud.engines.slurm.api import SlurmApi, SlurmUnavailable
from gpucloud.engines.slurm.parse import parse_document
from gpucloud.engines.slurm.script import Submission


def submit_body(sub: Submission, env: Mapping[str, str]) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": sub.name,
        "comment": sub.comment,
        "nodes": [len(sub.nodelist), len(sub.nodelist)],
        "nodelist": ",".join(sub.nodelist),
        "tasks": len(sub.nodelist) * sub.tasks_per_node,
        "tasks_per_node": sub.tasks_per_node,
        "cpus_per_task": sub.cpus_per_task,
        "requeue": False,
        "standard_output": str(sub.output),
        "standard_error": str(sub.output),
        "current_working_directory": str(sub.workdir),
        "environment": dict(env),
    }
    if sub.gres:
        job["gres"] = sub.gres
    if sub.memory_mib:
        job["memory_per_node"] = sub.memory_mib
    if sub.time_limit_min is not None:
        job["time_limit"] = sub.time_limit_min
    if sub.partition:
        job["partition"] = sub.partition
    return {"script": sub.script, "job": job}


class RestApi:
    name = "rest"

    def __init__(
        self,
        url: str,
        token: str,
        user: str,
        version: str = "v0.0.38",
        node_admin: SlurmApi | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.prefix = f"/slurm/{version}"
        self.node_admin = node_admin
        self._http = httpx.Client(
            base_url=self.url,
            headers={"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": token},
            timeout=timeout_s,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Mapping[str, Any]:
        try:
            response = self._http.request(method, self.prefix + path, **kwargs)
        except httpx.HTTPError as err:
            raise SlurmUnavailable(f"slurmrestd at {self.url}: {err}") from err
        if response.status_code in (401, 403):
            raise EngineError(f"slurmrestd at {self.url} refused the token "
                              f"(HTTP {response.status_code}): renew it (scontrol token)")
        try:
            doc = response.json()
        except ValueError as err:
            raise EngineError(f"slurmrestd {method} {path}: HTTP {response.status_code}, "
                              f"not JSON: {response.text[:200]!r}") from err
        if not isinstance(doc, Mapping):
            raise EngineError(f"slurmrestd {method} {path}: unexpected answer {doc!r:.200}")
        errors = doc.get("errors") or []
        if errors:
            text = "; ".join(str(e.get("description") or e.get("error") or e)
                             if isinstance(e, Mapping) else str(e) for e in errors)
            if "unable to contact slurm controller" in text.lower():
                raise SlurmUnavailable(f"slurmrestd {method} {path}: {text}")
            raise EngineError(f"slurmrestd {method} {path}: {text}")
        if response.status_code >= 500:
            raise SlurmUnavailable(f"slurmrestd {method} {path}: HTTP {response.status_code}")
        return doc

    def version(self) -> str:
        doc = self._call("GET", "/ping")
        pings = doc.get("pings") or []
        if not pings or any(p.get("ping") != "UP" for p in pings):
            raise SlurmUnavailable(f"slurmrestd at {self.url}: slurmctld is not UP: {pings}")
        release = (doc.get("meta") or {}).get("Slurm", {}).get("release")
        return str(release or "unknown")

    def nodes(self) -> list[Mapping[str, Any]]:
        return parse_document(self._call("GET", "/nodes"), "nodes", "slurmrestd /nodes")

    def jobs(self) -> list[Mapping[str, Any]]:
        return parse_document(self._call("GET", "/jobs"), "jobs", "slurmrestd /jobs")

    def submit(self, submission: Submission, env: Mapping[str, str]) -> int:
        doc = self._call("POST", "/job/submit", json=submit_body(submission, env))
        try:
            return int(doc["job_id"])
        except (KeyError, TypeError, ValueError) as err:
            raise EngineError(f"slurmrestd job/submit gave no job id: {dict(doc)!r:.200}") from err

    def _delete(self, job_id: int, signal: str | None) -> None:
        params = {"signal": signal} if signal else None
        try:
            self._call("DELETE", f"/job/{job_id}", params=params)
        except SlurmUnavailable:
            raise
        except EngineError as err:
            text = str(err).lower()
            if "already completing or completed" not in text and "invalid job id" not in text:
                raise

    def cancel(self, job_id: int) -> None:
        self._delete(job_id, None)

    def signal(self, job_id: int, signal: str) -> None:
        self._delete(job_id, signal)

    def update_node(self, node: str, state: str, reason: str | None = None) -> None:
        if self.node_admin is None:
            raise EngineError(
                f"cannot set node {node} {state}: slurmrestd {self.prefix} has no node update; "
                "install the Slurm client (scontrol) and set SLURM_CONF on the control plane")
        self.node_admin.update_node(node, state, reason)
