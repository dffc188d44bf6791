"""Level-triggered reconcile loops: read a snapshot, call the core, write the result."""
