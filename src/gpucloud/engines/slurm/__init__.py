"""The Slurm engine (``gpucloud up --engine slurm``): gpucloud places, Slurm executes.

Modules: ``parse`` (Slurm JSON to records, pure), ``status`` (records to RunStatus, pure),
``script`` (a launch as an sbatch request and scripts, pure), ``api`` (the SlurmApi protocol),
``cli`` and ``rest`` (its two implementations), ``rundir`` (the run files), ``engine``
(the engine contract), ``factory`` (settings to an engine). See docs/slurm.md.
"""

from gpucloud.engines.slurm.engine import SlurmEngine

__all__ = ["SlurmEngine"]
