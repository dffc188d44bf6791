"""Expected failures become one ``error: <what to fix>`` line and an exit code, never a traceback.

Exit codes: 0 ok, 1 for API and connection errors, 2 for usage and validation errors (including
a request the server rejects as invalid, 422), 130 when interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import typer

from gpucloud.client.client import ApiError
from gpucloud.core.errors import GpucloudError

OK = 0
FAILURE = 1
USAGE = 2
INTERRUPTED = 130


class CliError(Exception):
    """A failure the user can fix; ``str(err)`` says how."""

    def __init__(self, message: str, exit_code: int = FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class InputError(CliError):
    """Bad flags or input files: exit code 2, and nothing was sent to the server."""

    def __init__(self, message: str) -> None:
        super().__init__(message, USAGE)


def report(message: str) -> None:
    """One line on stderr; multi-line messages are folded so scripts can grep them."""
    line = " ".join(message.split())
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()


def _click_exceptions() -> ModuleType:
    """Typer >= 0.26 vendors click as ``typer._click``; older releases use click itself."""
    try:
        return importlib.import_module("typer._click.exceptions")
    except ImportError:
        return importlib.import_module("click.exceptions")


_click = _click_exceptions()
_ABORTS: tuple[type[BaseException], ...] = (
    typer.Abort,
    getattr(_click, "Abort", KeyboardInterrupt),
    KeyboardInterrupt,
)


def _usage_message(err: Any) -> str:
    message = str(err.format_message()).replace("Value error, ", "")
    if err.ctx is not None:
        message += f" (see '{err.ctx.command_path} --help')"
    return message


def guarded(call: Callable[[], int | None]) -> int:
    """Run ``call`` and turn every expected failure into ``error: ...`` and an exit code."""
    try:
        result = call()
    except _click.NoArgsIsHelpError as err:
        err.show()
        return USAGE
    except _click.UsageError as err:
        report(_usage_message(err))
        return USAGE
    except _click.ClickException as err:
        report(err.format_message())
        return int(err.exit_code)
    except _ABORTS:
        sys.stderr.write("\ninterrupted\n")
        return INTERRUPTED
    except CliError as err:
        report(str(err))
        return err.exit_code
    except ApiError as err:
        report(str(err))
        return USAGE if err.status == 422 else FAILURE
    except GpucloudError as err:  # raised by local validation (e.g. parse_job_spec)
        report(str(err))
        return USAGE
    except TimeoutError as err:
        report(str(err))
        return FAILURE
    except BrokenPipeError:  # e.g. 'gpucloud ps | head': the reader left, nothing to say
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILURE
    return result or OK
