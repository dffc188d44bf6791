"""Reading an asset file (YAML or CSV) into records that carry the line each asset starts on;
``core.fleet.validate_records`` then checks them. The CLI reads and validates before sending,
so that problems name the file's lines; the API validates again what it receives.

YAML: sections ``servers``, ``switches`` and ``storage``, each a list of assets (or one
top-level list whose assets each say their ``kind``). CSV: one asset per row, with a ``kind``
column; lists are written ``a;b`` (links ``1:leaf-1;2:leaf-2``), disks ``8x3.84T nvme,2x960G ssd``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml

from gpucloud.core.fleet import AssetKind, InvalidAssets, Record

SECTIONS = {"servers": AssetKind.SERVER, "switches": AssetKind.SWITCH,
            "storage": AssetKind.STORAGE}


class _Loader(yaml.SafeLoader):
    """Dates stay text, checked by the validator with the line and field they came from
    (PyYAML would otherwise fail on 2025-13-01 with no line at all)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_file(path: Path) -> list[Record]:
    try:
        text = path.read_text()
    except OSError as err:
        raise InvalidAssets([f"{path}: {err.strerror}"]) from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(text)
    if suffix in (".yaml", ".yml", ".json"):
        return read_yaml(text)
    raise InvalidAssets([f"{path}: name the file .yaml, .yml or .csv (its format)"])


def read_yaml(text: str) -> list[Record]:
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise InvalidAssets([f"{where}not valid YAML: {getattr(err, 'problem', err)}"]) from None
    if root is None:
        return []
    if isinstance(root, yaml.SequenceNode) and isinstance(data, list):
        return _items(root, data, "")
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise InvalidAssets(["line 1: expected sections servers:, switches:, storage:"])
    records: list[Record] = []
    problems: list[str] = []
    for key_node, value_node in root.value:
        section = str(key_node.value)
        line = key_node.start_mark.line + 1
        if section not in SECTIONS:
            problems.append(f"line {line}: {section!r} is not a section; use "
                            + ", ".join(SECTIONS))
            continue
        items = data.get(section) or []
        if not isinstance(value_node, yaml.SequenceNode) or not isinstance(items, list):
            if data.get(section) is not None:
                problems.append(f"line {line}: {section}: expected a list of assets")
            continue
        records += _items(value_node, items, SECTIONS[section].value)
    if problems:
        raise InvalidAssets(problems)
    return records


def _items(node: yaml.SequenceNode, items: list[Any], kind: str) -> list[Record]:
    records = []
    problems = []
    for item_node, item in zip(node.value, items, strict=True):
        line = item_node.start_mark.line + 1
        if not isinstance(item, dict):
            problems.append(f"line {line}: expected an asset (name: ..., and its fields)")
            continue
        records.append(Record(line, str(item.get("kind", kind) or kind),
                              {str(k): v for k, v in item.items()}))
    if problems:
        raise InvalidAssets(problems)
    return records


def read_csv(text: str) -> list[Record]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "name" not in reader.fieldnames:
        raise InvalidAssets(["line 1: the header must name the columns, with kind and name"])
    records = []
    for row in reader:
        values = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(values.values()):
            continue  # a blank line
        records.append(Record(reader.line_num, values.get("kind", ""), values))
    return records
