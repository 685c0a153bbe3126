"""Unit graph: every resnet/transformer is found with correct shapes, order and skip connections."""
from __future__ import annotations

import networkx as nx

from tocsr_nas.teachers import unet_skeleton
from tocsr_nas.units import build_unit_graph, iter_unit_modules, unit_infos


def test_units_shapes_and_order(micro_teacher):
    graph = build_unit_graph(micro_teacher.unet, micro_teacher.example_inputs())
    units = unit_infos(graph)
    kinds = [u.kind for u in units]
    assert kinds.count("resnet") == 6 + 2 + 9  # 2 per down block, 2 in the mid block, 3 per up block
    assert kinds.count("transformer") == 4 + 1 + 6
    assert [u.order for u in units] == list(range(len(units)))
    first = units[0]
    assert (first.path, first.in_shape, first.out_shape, first.temb_channels) == ("down_blocks.0.resnets.0", (32, 16, 16), (32, 16, 16), 128)
    attention = next(u for u in units if u.kind == "transformer")
    assert attention.context_shape == (4, 32)
    assert nx.is_directed_acyclic_graph(graph)


def test_skip_connections_feed_every_up_resnet(micro_teacher):
    graph = build_unit_graph(micro_teacher.unet, micro_teacher.example_inputs())
    units = {u.path: u for u in unit_infos(graph)}
    skips = [(s, d) for s, d, kind in graph.edges(data="kind") if kind == "skip"]
    up_resnets = [p for p, u in units.items() if p.startswith("up_blocks") and u.kind == "resnet"]
    assert sorted(d for _, d in skips) == sorted(up_resnets)
    for src, dst in skips:  # the up resnet's input = previous hidden state + the skip's channels
        skip_channels = 32 if src == "conv_in" else units[src].out_channels
        assert units[dst].in_channels > skip_channels
    assert ("conv_in", "up_blocks.2.resnets.2") in skips  # the outermost skip closes the U


def test_unit_discovery_on_sd15_shape():
    paths = [p for p, _, _ in iter_unit_modules(unet_skeleton("sd15"))]
    assert sum(".resnets." in p for p in paths) == 22
    assert sum(".attentions." in p for p in paths) == 16
