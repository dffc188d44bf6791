"""gpucloud: a self-service, metered, self-healing GPU cloud.

The public SDK is :class:`gpucloud.Client`; everything else is the platform itself.
"""

from gpucloud.client import ApiError, Client

__all__ = ["ApiError", "Client", "__version__"]
__version__ = "0.1.0"
