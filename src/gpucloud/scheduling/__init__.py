"""Pure placement core: snapshots in, placements (or reasons) out; no database, clock or I/O."""
