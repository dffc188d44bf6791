"""The Python SDK: ``from gpucloud import Client``."""

from gpucloud.client.client import ApiError, Client

__all__ = ["ApiError", "Client"]
