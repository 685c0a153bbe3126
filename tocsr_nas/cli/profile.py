"""``tocsr-nas profile``: build a search space's cost table; optionally cost one arch and verify the sums."""
from __future__ import annotations

import argparse
import json

from ..device import add_device_args, device_from_args
from ..errors import ConfigError
from .argtypes import int_range, seed_int
from .paths import check_input_file, check_output_file


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile", help="params and GMACs of every candidate of a search space",
        description="Profile every candidate of a search space at its unit's input shape (fvcore MACs with and "
                    "without attention matmuls, ptflops cross-check) and print the teacher's and an arch's cost.",
        epilog="Example: tocsr-nas profile --space tiny_ldm --arch 'down.0:R=I,A=lin' --out runs/x/cost_table.json")
    parser.add_argument("--space", default="tiny_ldm", help="search space name or YAML path (default: tiny_ldm)")
    parser.add_argument("--arch", help="an arch string to cost (decisions left out keep the teacher op)")
    parser.add_argument("--table", help="reuse a cost table JSON written by --out instead of profiling again")
    parser.add_argument("--out", help="write the cost table JSON here (a .json file)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--verify", type=int_range(0, 1000), default=0, metavar="N",
                        help="check the table against whole-model counts of N random archs (0 to 1000)")
    parser.add_argument("--no-ptflops", action="store_true", help="skip the ptflops cross-check (faster)")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed for --verify's archs")
    parser.add_argument("--latency", action="store_true",
                        help="also time every candidate and the teacher (latency table) on --device in --dtype")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    add_device_args(parser)
    parser.set_defaults(func=run)


def _cost_dict(cost) -> dict[str, float]:
    return {"params": cost.params, "gmacs": cost.gmacs, "gmacs_no_attention": cost.gmacs_no_attention}


def _latency(teacher, space, arch, device, dtype) -> dict[str, object]:
    """The space's latency table on ``device`` in ``dtype``: the teacher's, the fixed parts' and the arch's ms."""
    from ..profiling.latency import LatencyTarget, build_latency_table  # noqa: PLC0415

    target = LatencyTarget(device=str(device), dtype=str(dtype).removeprefix("torch."))  # 1 CPU thread
    table = build_latency_table(teacher, space, target)
    result: dict[str, object] = {"device": target.device, "dtype": target.dtype, "threads": target.threads,
                                 "teacher_ms": table.teacher_ms, "fixed_ms": table.fixed_ms}
    if arch is not None:
        result["arch_ms"] = table.cost(arch)
    return result


def run(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415  (heavy imports only for this command)

    import search_spaces  # noqa: PLC0415

    from ..profiling.cost_table import CostTable, build_cost_table, verify_cost_table  # noqa: PLC0415
    from ..teachers import load_teacher  # noqa: PLC0415

    if (args.device or args.dtype) and not args.latency:
        raise ConfigError("choose where --latency times: add --latency", key="--device/--dtype")
    device, dtype = device_from_args(args) if args.latency else (None, None)
    if args.table:
        check_input_file(args.table, key="--table")
    if args.out:
        check_output_file(args.out, key="--out", suffixes=[".json"], overwrite=args.overwrite)
    space = search_spaces.load(args.space)
    arch = space.parse(args.arch) if args.arch else None
    teacher = load_teacher(space.teacher)
    if args.table:
        table = CostTable.load(args.table, space)
    else:
        table = build_cost_table(teacher, space, ptflops=not args.no_ptflops, progress=not args.json)
    if args.out:
        table.save(args.out)
    frame = table.to_frame()
    summary = {"space": space.name, "teacher": space.teacher, "latent_size": table.latent_size,
               "teacher_cost": _cost_dict(table.teacher_total), "fixed_cost": _cost_dict(table.fixed),
               "candidates": len(frame)}
    if "ptflops_macs" in frame:
        summary["ptflops_vs_fvcore_no_attention"] = float(frame.ptflops_macs.sum() / max(frame.macs_no_attention.sum(), 1))
    if arch is not None:
        summary["arch"] = {"arch": str(arch), "arch_id": arch.arch_id, **_cost_dict(table.cost(arch)),
                           "ratios": table.ratios(arch)}
    if args.latency:
        summary["latency"] = _latency(teacher, space, arch, device, dtype)
    if args.verify:
        rng = np.random.default_rng(args.seed)
        check = verify_cost_table(table, teacher, [space.sample(rng) for _ in range(args.verify)])
        summary["verify"] = {"archs": len(check), "max_macs_rel_error": float(check.macs_rel_error.max()),
                             "max_macs_no_attention_rel_error": float(check.macs_no_attention_rel_error.max()),
                             "params_exact": bool((check.params_table == check.params_model).all())}
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    t, f = table.teacher_total, table.fixed
    print(f"space {space.name}: teacher {space.teacher} at latent {table.latent_size}x{table.latent_size}")
    print(f"  teacher: {t.params / 1e6:.2f}M params, {t.gmacs:.3f} GMACs ({t.gmacs_no_attention:.3f} without attention matmuls)")
    print(f"  fixed parts: {f.params / 1e6:.2f}M params, {f.gmacs:.3f} GMACs")
    per_candidate = frame.groupby(["decision", "label"], sort=False)[["params", "macs"]].sum().reset_index()
    per_candidate["gmacs"] = per_candidate.pop("macs") / 1e9
    print(per_candidate.to_string(index=False))
    if "arch" in summary:
        a = summary["arch"]
        print(f"arch {a['arch_id']}: {a['params'] / 1e6:.2f}M params, {a['gmacs']:.3f} GMACs "
              f"({a['ratios']['params']:.2f}x fewer params, {a['ratios']['macs']:.2f}x fewer MACs than the teacher)")
    if "latency" in summary:
        lat = summary["latency"]
        print(f"latency on {lat['device']} ({lat['dtype']}, {lat['threads']} CPU thread(s)): teacher {lat['teacher_ms']:.2f} ms per UNet call, "
              f"fixed parts {lat['fixed_ms']:.2f} ms" + (f", arch {lat['arch_ms']:.2f} ms" if "arch_ms" in lat else ""))
    if "verify" in summary:
        v = summary["verify"]
        print(f"verified {v['archs']} archs: max MAC error {v['max_macs_rel_error']:.2e}, params exact: {v['params_exact']}")
    return 0
