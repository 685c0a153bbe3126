"""``tocsr-nas units``: the replaceable units of a teacher UNet, their shapes and skip connections."""
from __future__ import annotations

import argparse
import json

from .argtypes import int_range

MAX_LATENT_SIZE = 256  # a 2048-pixel image at the usual VAE factor 8; larger shapes need huge activations

def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "units", help="list a teacher's replaceable units (the unit graph)",
        description="List every replaceable unit of a teacher UNet with its shapes, params and skip inputs.",
        epilog="Example: tocsr-nas units --teacher tiny-ldm")
    parser.add_argument("--teacher", default="tiny-ldm", help="teacher name, config file or local folder (default: tiny-ldm)")
    parser.add_argument("--latent-size", type=int_range(1, MAX_LATENT_SIZE),
                        help=f"latent resolution for the shapes, 1 to {MAX_LATENT_SIZE} (default: the teacher's)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd  # noqa: PLC0415  (heavy imports only for this command)

    from ..profiling import count_params  # noqa: PLC0415
    from ..teachers import load_teacher  # noqa: PLC0415
    from ..units import build_unit_graph, unit_infos  # noqa: PLC0415

    teacher = load_teacher(args.teacher)
    graph = build_unit_graph(teacher.unet, teacher.example_inputs(latent_size=args.latent_size))
    rows = []
    for unit in unit_infos(graph):
        skips = [src for src, _, kind in graph.in_edges(unit.path, data="kind") if kind == "skip"]
        rows.append({
            "order": unit.order, "path": unit.path, "kind": unit.kind,
            "in_shape": "x".join(map(str, unit.in_shape)), "out_shape": "x".join(map(str, unit.out_shape)),
            "params": count_params(teacher.unet.get_submodule(unit.path)), "skip_from": ",".join(skips),
        })
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(pd.DataFrame(rows).to_string(index=False))
        print(f"{len(rows)} units, {sum(r['skip_from'] != '' for r in rows)} with skip inputs, teacher '{teacher.name}'")
    return 0
