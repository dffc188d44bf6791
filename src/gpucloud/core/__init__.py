"""The functional core: plain data and pure decisions. No database, no clock, no I/O."""
