"""gpucloud: a self-service, metered, self-healing GPU cloud.

The public SDK is :class:`gpucloud.Client`, and, inside a job, :func:`gpucloud.checkpoint_done`;
everything else is the platform itself.
"""

from gpucloud.checkpoints import checkpoint_done
from gpucloud.client import ApiError, Client

__all__ = ["ApiError", "Client", "__version__", "checkpoint_done"]
__version__ = "0.1.0"
