"""Execution engines behind one small contract (see ``base.Engine``)."""
