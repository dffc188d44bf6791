"""The REST API under /v1 (FastAPI). Errors are problem+json, mapped in ``problems``."""
