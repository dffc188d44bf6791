"""A real Redfish BMC for tests: ``sushy-emulator --fake`` (from sushy-tools) on a free port,
one emulated system per bare-metal server, behind HTTP basic auth; and a tiny HTTP server for
the boot images the BMC fetches into its virtual CD (the emulator downloads them for real).

The fake driver applies a power change 1 to 11 s after it is asked (its ``random.randint``), like
real hardware; ``quick`` makes that 1 s (0-1 s, as it truncates the clock), so that a lifecycle
of five power changes takes seconds, not a minute. The wait is still there: a request's effect
shows only on a later read, which is what the controller has to cope with."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx
import sushy  # type: ignore[import-untyped]
from sushy import auth as sushy_auth

from tests.servers import free_port

USER = "admin"
PASSWORD = "s3cret-bmc-pw"  # tests assert it never shows up in logs, events or answers


@dataclass
class Emulator:
    url: str  # http://127.0.0.1:PORT
    systems: dict[str, str]  # server name -> its system's Redfish path
    images: str  # base URL of the image server

    def address(self, server: str) -> str:
        return self.url + self.systems[server]

    def system(self, server: str) -> object:
        root = sushy.Sushy(self.url + "/redfish/v1",
                           auth=sushy_auth.BasicAuth(USER, PASSWORD), verify=False)
        return root.get_system(self.systems[server])

    def power_on(self, server: str) -> bool:
        state = self.system(server).power_state  # type: ignore[attr-defined]
        return bool(state == sushy.PowerState.ON)

    def force_off(self, server: str) -> None:
        """What the wipe image does once the disks are erased."""
        self.system(server).reset_system(sushy.ResetType.FORCE_OFF)  # type: ignore[attr-defined]

    def media(self, server: str) -> str:
        answer = httpx.get(self.url + self.systems[server] + "/VirtualMedia/Cd",
                           auth=(USER, PASSWORD))
        answer.raise_for_status()
        return str(answer.json().get("Image") or "")


def available() -> str | None:
    """Why the emulator cannot run here, or None."""
    if shutil.which("sushy-emulator") is None and not _venv_emulator().exists():
        return "sushy-tools is not installed (it is a dev dependency: scripts/bootstrap)"
    return None


def _venv_emulator() -> Path:
    import sys

    return Path(sys.executable).with_name("sushy-emulator")


QUICK_POWER = """# sushy-emulator's fake driver: power changes apply after random.randint(1, 11) s
import random
random.randint = lambda low, high: low
"""


@contextmanager
def emulator(tmp: Path, servers: list[str], quick: bool = True) -> Iterator[Emulator]:
    images = tmp / "images"
    images.mkdir()
    for name in ("ubuntu.iso", "rocky.iso", "wipe.iso"):
        (images / name).write_bytes(b"not really an ISO: the emulator only downloads it\n")
    handler = functools.partial(_QuietHandler, directory=str(images))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    systems = {name: str(uuid.uuid4()) for name in servers}
    htpasswd = tmp / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    config = tmp / "emulator.conf"
    fake = [{"uuid": uid, "name": name, "power_state": "Off",
             "nics": [{"mac": f"00:5c:52:31:3a:{i:02x}", "ip": f"172.22.0.{100 + i}"}]}
            for i, (name, uid) in enumerate(systems.items())]
    config.write_text(f"SUSHY_EMULATOR_FAKE_SYSTEMS = {fake!r}\n"
                      f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}\n"
                      f"SUSHY_EMULATOR_STATE_DIR = {str(tmp / 'state')!r}\n")
    port = free_port()
    binary = shutil.which("sushy-emulator") or str(_venv_emulator())
    log = (tmp / "emulator.log").open("w")
    env = dict(os.environ)
    if quick:
        site = tmp / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(QUICK_POWER)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    process = subprocess.Popen([binary, "--fake", "--config", str(config), "-i", "127.0.0.1",
                                "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/redfish/v1/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sushy-emulator did not start: {(tmp / 'emulator.log')}")
            time.sleep(0.1)
        yield Emulator(url, {n: f"/redfish/v1/Systems/{u}" for n, u in systems.items()},
                       f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
