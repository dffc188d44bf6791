"""The ``gpucloud`` command line: a thin Typer/Rich layer over :class:`gpucloud.Client`.

Commands live in modules by responsibility (jobs, accounts, fleet, up); presentation helpers in
:mod:`gpucloud.cli.output` and :mod:`gpucloud.cli.render`; every expected failure becomes one
``error: ...`` line through :mod:`gpucloud.cli.errors`.
"""
