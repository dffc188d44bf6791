"""Slurm host lists (``gpu-node-[0-1,3]``) to names, and back: pure string work."""

from __future__ import annotations

import re

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def split_top(text: str, opening: str = "[", closing: str = "]") -> list[str]:
    """Split on commas outside brackets (``[]`` in host lists, ``()`` in GRES strings)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (part.strip() for part in parts) if p]


def _expand_one(pattern: str) -> list[str]:
    open_at = pattern.find("[")
    if open_at < 0:
        return [pattern]
    close_at = pattern.find("]", open_at)
    if close_at < 0:
        raise ValueError(f"unbalanced '[' in host list {pattern!r}")
    head, body, tail = pattern[:open_at], pattern[open_at + 1 : close_at], pattern[close_at + 1 :]
    names = []
    for item in body.split(","):
        match = _RANGE.fullmatch(item.strip())
        if match is None:
            raise ValueError(f"bad range {item!r} in host list {pattern!r}")
        low, high = match.group(1), match.group(2) or match.group(1)
        width = len(low)  # zero padding as written: n[01-03] -> n01 n02 n03
        for number in range(int(low), int(high) + 1):
            names.append(f"{head}{number:0{width}d}")
    return [name + rest for name in names for rest in _expand_one(tail)]


def expand(hostlist: str) -> list[str]:
    """``a[0-1],b`` -> ``["a0", "a1", "b"]``; Slurm's ``(null)``/empty -> ``[]``."""
    if not hostlist or hostlist in ("(null)", "None"):
        return []
    return [name for part in split_top(hostlist) for name in _expand_one(part)]
