"""The register's rules: validation with line numbers, matching nodes, deriving topology."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpucloud.core.fleet import (
    AssetKind,
    InvalidAssets,
    Record,
    ServerPlace,
    ServerRole,
    SwitchPlace,
    SwitchTier,
    match_nodes,
    topology_labels,
    validate_records,
)
from gpucloud.fleet_import import read_csv, read_file, read_yaml

EXAMPLES = Path(__file__).parents[3] / "examples" / "fleet"


def test_the_example_files_validate_with_their_lines() -> None:
    specs = validate_records(read_file(EXAMPLES / "fleet.yaml"), "CNY")
    by_name = {s.name: s for s in specs}
    a01 = by_name["gpu-a01"]
    assert (a01.kind, a01.role, a01.accelerator_count, a01.accelerator_model) == (
        AssetKind.SERVER, ServerRole.AI, 8, "H100")
    assert a01.line == 4 and a01.purchase_cost_minor == 240_000_000  # exact minor units
    assert [(link.port, link.peer) for link in by_name["leaf-1"].links][:2] == [
        (1, "gpu-a01"), (2, "gpu-a02")]
    assert by_name["store-1"].capacity_gib == 500 * 1024
    csv_specs = validate_records(read_file(EXAMPLES / "fleet.csv"), "CNY")
    assert [(s.line, s.name) for s in csv_specs] == [(2, "edge-01"), (3, "cpu-01"),
                                                     (4, "tor-e1")]
    assert csv_specs[0].accelerator_model == "L40S" and csv_specs[1].role is ServerRole.CPU


def test_every_problem_of_a_file_names_its_line_and_field() -> None:
    text = """servers:
  - name: ok-1
    accelerators: 8xH100
  - name: Bad Name
    accelerators: 8xNOPE
    cpus: many
    purchase_date: 2025-13-01
  - name: ok-1
    accelerators: 4xH100
    cost: "12.345"
switches:
  - name: sw
    ports: 4
    links: ["9:ok-1"]
"""
    with pytest.raises(InvalidAssets) as caught:
        validate_records(read_yaml(text), "CNY")
    problems = caught.value.problems
    assert any(p.startswith("line 4: ") and "name" in p and "lowercase" in p for p in problems)
    assert any(p.startswith("line 4: ") and "'NOPE' is not a model" in p for p in problems)
    assert any(p.startswith("line 4: ") and "cpus: 'many' is not a whole number" in p
               for p in problems)
    assert any(p.startswith("line 4: ") and "purchase_date" in p for p in problems)
    assert any(p.startswith("line 8: ") and "already defined on line 2" in p for p in problems)
    assert any(p.startswith("line 8: ") and "cost" in p and "2 decimals" in p
               for p in problems)
    assert any(p.startswith("line 12: ") and "fabric: is required" in p for p in problems)
    assert any(p.startswith("line 12: ") and "port 9 is beyond" in p for p in problems)
    assert "nothing was changed" in str(caught.value)


def test_csv_rows_are_validated_on_their_lines_and_unknown_fields_are_named() -> None:
    text = "kind,name,accelerators,flavour\nserver,a,2xH100,\nrouter,b,,\nserver,c,,spicy\n"
    with pytest.raises(InvalidAssets) as caught:
        validate_records(read_csv(text), "CNY")
    problems = caught.value.problems
    assert any(p.startswith("line 3: ") and "'router' is not one of" in p for p in problems)
    assert any(p.startswith("line 4: ") and "flavour: is not a field of a server" in p
               for p in problems)
    assert not any(p.startswith("line 2: ") for p in problems)


def test_a_role_needs_what_makes_it_and_bare_metal_needs_a_bmc() -> None:
    with pytest.raises(InvalidAssets) as caught:
        validate_records([Record(7, "server", {"name": "x", "role": "gpu"}),
                          Record(9, "server", {"name": "y", "accelerators": "1xH100",
                                               "baremetal": "yes", "bmc": "10.0.0.1"})], "CNY")
    text = str(caught.value)
    assert "line 7: x: accelerators: an AI server needs its accelerators" in text
    assert "line 9: y: bmc: '10.0.0.1': write the BMC's Redfish URL" in text


def test_nodes_match_servers_by_hostname_name_or_serial_once_each() -> None:
    servers = [ServerPlace("srv-1", "node-a", None, "r1", ""),
               ServerPlace("srv-2", None, "SN2", "r1", ""),
               ServerPlace("n3", None, None, "r2", "")]
    nodes = {"node-a": {}, "host-x": {"serial": "SN2"}, "n3": {}, "stranger": {}}
    assert match_nodes(nodes, servers) == {"node-a": "srv-1", "host-x": "srv-2", "n3": "n3"}


def test_topology_is_rack_island_leaf_and_the_leafs_spine() -> None:
    servers = [ServerPlace("a", None, None, "r1", "nvl-1"), ServerPlace("b", None, None, "", "")]
    switches = [SwitchPlace("leaf-2", SwitchTier.LEAF, ("b",)),
                SwitchPlace("leaf-1", SwitchTier.LEAF, ("a", "spine-1")),
                SwitchPlace("spine-1", SwitchTier.SPINE, ()),
                SwitchPlace("spine-2", SwitchTier.SPINE, ("leaf-2",))]
    assert topology_labels(servers, switches) == {
        "a": {"rack": "r1", "nvlink_island": "nvl-1", "leaf_switch": "leaf-1",
              "spine": "spine-1"},
        "b": {"leaf_switch": "leaf-2", "spine": "spine-2"},
    }
