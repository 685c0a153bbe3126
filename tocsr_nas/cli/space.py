"""``tocsr-nas space``: list the shipped search spaces, show one (stages, candidates, size), or export one."""
from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "space", help="list or show search spaces",
        description="List the shipped search spaces, or show one: its stages, candidates and number of archs.",
        epilog="Examples: tocsr-nas space list; tocsr-nas space show tiny_ldm; tocsr-nas space show my_space.yaml --json; "
               "tocsr-nas space export tiny_ldm --format nni --out tiny_ldm_nni.json")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="names of the shipped spaces").set_defaults(func=run_list)
    show = actions.add_parser("show", help="stages, candidates and size of a space")
    show.add_argument("space", help="a shipped space name or a YAML path")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=run_show)
    export = actions.add_parser("export", help="write a space in another tool's format (NNI search-space JSON)")
    export.add_argument("space", help="a shipped space name or a YAML path")
    export.add_argument("--format", required=True, choices=["nni"], help="nni: one 'choice' of labels per decision")
    export.add_argument("--out", help="a new file to write (default: print)")
    export.set_defaults(func=run_export)


def run_list(args: argparse.Namespace) -> int:
    import search_spaces  # noqa: PLC0415  (heavy imports only when the command runs)

    for name in search_spaces.available_spaces():
        print(name)
    return 0


def run_show(args: argparse.Namespace) -> int:
    import search_spaces  # noqa: PLC0415

    space = search_spaces.load(args.space)
    decisions = [{"decision": d.name, "stage": d.stage, "kind": d.kind, "units": list(d.units),
                  "candidates": [c.label for c in d.candidates]} for d in space.decisions]
    if args.json:
        print(json.dumps({"name": space.name, "teacher": space.teacher, "size": space.size, "decisions": decisions}, indent=1))
        return 0
    print(f"space {space.name}  (teacher {space.teacher}, {space.source})")
    if space.config.description:
        print(f"  {space.config.description}")
    for d in decisions:
        print(f"  {d['decision']:<28} {len(d['units'])} unit(s)  {len(d['candidates'])} candidates: {', '.join(d['candidates'])}")
    print(f"{len(decisions)} decisions, {space.size:,} architectures")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    import search_spaces  # noqa: PLC0415
    from strategies.nni_tuners import nni_search_space  # noqa: PLC0415 (does not import nni)

    from ..errors import ConfigError  # noqa: PLC0415

    out = Path(args.out) if args.out else None
    if out is not None and out.exists():
        raise ConfigError("exists; choose a new file", source=out, key="--out")
    text = json.dumps(nni_search_space(search_spaces.load(args.space)), indent=1) + "\n"
    if out is None:
        print(text, end="")
        return 0
    from ..atomic import write_text  # noqa: PLC0415

    write_text(out, text)
    print(f"wrote {out}")
    return 0
