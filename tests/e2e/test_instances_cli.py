"""An instance's life through the real CLI against a real server: create it in an image, run
commands through ``instance shell`` with piped input, stop and start it (its disk kept), save
it as an image, delete it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import CLI_TIMEOUT_S, Cloud, wait_for

pytestmark = pytest.mark.slow


def shell(cloud: Cloud, name: str, script: str) -> subprocess.CompletedProcess[str]:
    """``echo SCRIPT | gpucloud instance shell NAME``: stdin is a pipe, not a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "gpucloud.cli.main", "instance", "shell", name],
        input=script, env=cloud.env(), capture_output=True, text=True,
        timeout=CLI_TIMEOUT_S, check=False,
    )


def shell_on_a_tty(cloud: Cloud, name: str, keys: bytes, rows: int, cols: int) -> tuple[
        int, str]:
    """``gpucloud instance shell NAME`` on a real terminal (a local pty of rows x cols), with
    ``keys`` typed into it; its exit code and what the terminal showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "gpucloud.cli.main", "instance", "shell", name],
        stdin=slave, stdout=slave, stderr=slave, env=cloud.env(), start_new_session=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + CLI_TIMEOUT_S
    typed = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the CLI exited and closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if not typed and (b"$ " in seen or b"# " in seen):  # the remote prompt
                os.write(master, keys)
                typed = True
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(timeout=10), seen.decode(errors="replace")


def state_of(cloud: Cloud, name: str, *states: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        shown: dict[str, Any] = cloud.json("instance", "show", name)
        return shown if shown["state"] in states else None

    return wait_for(reached, f"instance {name} {'/'.join(states)}", timeout=90)


def jupyter_answers_through_the_proxy(cloud: Cloud, name: str, home_file: str,
                                      timeout: float) -> None:
    """The instance's Jupyter server, reached with the user's token: its status, and
    ``home_file`` in its listing of the home; refused without gpucloud auth."""
    path = cloud.ok("instance", "jupyter", name).strip()
    assert path.startswith(cloud.url) and "/jupyter" in path, path
    path = path.rstrip("/")
    headers = {"Authorization": f"Bearer {cloud.token}"}

    def status() -> dict[str, Any] | None:
        answer = httpx.get(f"{path}/api/status", headers=headers, timeout=10)
        return answer.json() if answer.status_code == 200 else None

    assert "started" in wait_for(status, "the Jupyter server's status", timeout=timeout)
    listing = httpx.get(f"{path}/api/contents", headers=headers, timeout=10)
    assert listing.status_code == 200, listing.text
    assert home_file in {item["name"] for item in listing.json()["content"]}
    assert httpx.get(f"{path}/api/status", timeout=10).status_code == 401


def wait_deleted(cloud: Cloud, name: str) -> None:
    wait_for(lambda: any(i["name"] == name and i["state"] == "DELETED"
                         for i in cloud.json("instance", "list", "--deleted")),
             f"instance {name} DELETED", timeout=90)


def test_an_instance_through_the_cli(cloud: Cloud) -> None:
    created = cloud.json("instance", "create", "--name", "box", "--gpus", "1", "--gpu-type",
                         "H100", "--image", "cuda-base", "--cpus", "0.5", "--memory", "512M",
                         "--disk", "2G")
    assert (created["name"], created["image"], created["disk_gib"]) == ("box", "cuda-base", 2)
    running = state_of(cloud, "box", "RUNNING")
    assert len(running["devices"]) == 1
    listed = cloud.ok("instance", "list")
    assert "box" in listed and "RUNNING" in listed and "cuda-base" in listed

    first = shell(cloud, "box", 'echo "in=$GPUCLOUD_IMAGE gpus=$CUDA_VISIBLE_DEVICES"; '
                                "echo kept > ~/notes.txt; exit 3\n")
    assert first.returncode == 3, first.stderr
    assert "in=cuda-base gpus=" in first.stdout
    # No 'exit': the end of the piped input ends the shell, as Ctrl-D would.
    python = shell(cloud, "box", 'python -c "import sys; print(\'prefix\', sys.prefix)"\n')
    assert python.returncode == 0, python.stderr
    assert f"prefix {cloud.data_dir}/images/nodes/" in python.stdout

    # On a terminal: raw mode (keys as typed, \r for Enter), the window size forwarded.
    code, screen = shell_on_a_tty(cloud, "box", b"stty size; echo tty-$((6*7))\rexit 4\r",
                                  rows=33, cols=101)
    assert code == 4, screen
    assert "33 101" in screen and "tty-42" in screen, screen

    assert "stopping" in cloud.ok("instance", "stop", "box")
    stopped = state_of(cloud, "box", "STOPPED")
    assert stopped["devices"] == [] and stopped["job_id"] is None
    refused = shell(cloud, "box", "echo never\n")
    assert refused.returncode != 0 and "box" in refused.stderr

    assert "starting" in cloud.ok("instance", "start", "box")
    state_of(cloud, "box", "RUNNING")
    again = shell(cloud, "box", "cat ~/notes.txt\n")
    assert again.returncode == 0 and "kept" in again.stdout, again.stderr

    saved = cloud.json("image", "save", "box", "box-env")
    assert (saved["kind"], saved["base"]) == ("private", "cuda-base")
    assert "box-env" in cloud.ok("image", "list")
    built = cloud.ok("image", "show", "cuda-base")
    assert "READY" in built

    assert "deleting" in cloud.ok("instance", "delete", "box")
    wait_deleted(cloud, "box")
    assert all(i["name"] != "box" for i in cloud.json("instance", "list"))
    late = cloud.cli("image", "save", created["id"], "too-late")
    assert late.returncode == 1 and "is deleted" in late.stderr, late.stderr
    cloud.ok("image", "delete", "box-env")

    missing = shell(cloud, "no-such-box", "echo hi\n")
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_the_idle_policy_through_the_cli(cloud: Cloud) -> None:
    policy = cloud.json("instance", "idle-policy", "--idle", "30m", "--below", "10",
                        "--action", "stop")
    assert (policy["below_pct"], policy["idle_s"], policy["grace_s"], policy["action"]) == (
        10, 1800, 300, "stop")
    assert "below 10% utilisation for 1800 s" in cloud.ok("instance", "idle-policy")
    bad = cloud.cli("instance", "idle-policy", "--idle", "10s")
    assert bad.returncode != 0 and "minute" in bad.stderr
    cloud.ok("instance", "idle-policy", "--clear")
    assert cloud.cli("instance", "idle-policy").returncode == 1


def test_a_jupyter_server_in_an_instance_answers_through_the_proxy(cloud: Cloud) -> None:
    """A real jupyter_server (the dev extra installs it) in the instance, reached through the
    control plane with the user's token: its status, and the instance's home in its file
    listing."""
    cloud.json("instance", "create", "--name", "lab", "--gpus", "1", "--gpu-type", "H100",
               "--cpus", "0.5", "--memory", "512M", "--jupyter")
    state_of(cloud, "lab", "RUNNING")
    written = shell(cloud, "lab", "echo hello > ~/from-shell.txt\n")
    assert written.returncode == 0, written.stderr
    jupyter_answers_through_the_proxy(cloud, "lab", "from-shell.txt", timeout=90)
    cloud.ok("instance", "delete", "lab")
