"""BK-SDM as archs of ``sd15_bk``: exact parameter counts and GMACs against the shipped BK-SDM teachers.

Usage::

    python benchmarks/bk_sdm_removal.py [--out benchmarks/results] 

For BK-SDM-Base/Small/Tiny expressed as archs of ``search_spaces/sd15_bk.yaml`` (``search_spaces.bk_sdm``):
the cost table's params/MACs (a sum over units of SD-1.5), a whole-model count of the extracted compact UNet
(with a forward pass and its output shape), and a whole-model count of the shipped ``bk-sdm-*`` teacher built
from its own diffusers config. Batch 1, random weights (counts do not depend on them); one SD-size UNet at a time.
"""  # noqa: W291
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import search_spaces  # noqa: E402
from benchmarks._common import RESULTS, write_results  # noqa: E402
from search_spaces.bk_sdm import VARIANTS, bk_sdm_arch  # noqa: E402
from tocsr_nas.profiling.cost_table import (  # noqa: E402
    build_cost_table,
    extract_fresh,
    model_cost,
    model_inputs,
)
from tocsr_nas.teachers import load_teacher  # noqa: E402
from tocsr_nas.units import build_unit_graph, unit_infos  # noqa: E402


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    space = search_spaces.load("sd15_bk")
    latent_size = space.latent_size
    begin = time.perf_counter()
    teacher = load_teacher(space.teacher)
    table = build_cost_table(teacher, space, ptflops=False, progress=False)
    table_s = time.perf_counter() - begin
    inputs = model_inputs(teacher, latent_size)
    units = {u.path: u for u in unit_infos(build_unit_graph(teacher.unet, inputs))}
    rows = {}
    for variant in VARIANTS:
        arch = bk_sdm_arch(space, variant)
        predicted = table.cost(arch)
        compact = extract_fresh(teacher, space, arch, units)
        measured = model_cost(compact, inputs)
        out_shape = tuple(compact(**inputs).sample.shape)
        rows[variant] = {"arch": str(arch), "params_table": predicted.params, "macs_table": predicted.macs,
                         "macs_no_attention_table": predicted.macs_no_attention, "params_compact": measured.params,
                         "macs_compact": measured.macs, "output_shape": list(out_shape)}
        del compact
        gc.collect()
    teacher_cost = table.teacher_total
    del teacher
    gc.collect()
    for variant in VARIANTS:
        bk = load_teacher(f"bk-sdm-{variant}")
        cost = model_cost(bk.unet, model_inputs(bk, latent_size))
        row = rows[variant]
        row.update(params_bk=cost.params, macs_bk=cost.macs, macs_no_attention_bk=cost.macs_no_attention,
                   params_exact=row["params_table"] == cost.params == row["params_compact"],
                   macs_rel_error=abs(row["macs_table"] - cost.macs) / cost.macs,
                   macs_no_attention_rel_error=abs(row["macs_no_attention_table"] - cost.macs_no_attention)
                   / cost.macs_no_attention)
        del bk
        gc.collect()
    data = {"space": "sd15_bk", "teacher": "sd15", "latent_size": latent_size, "table_build_s": table_s,
            "teacher_params": teacher_cost.params, "teacher_macs": teacher_cost.macs, "variants": rows}
    lines = ["BK-SDM-Base/Small/Tiny as archs of `sd15_bk` (SD-1.5 with units dropped) against the shipped "
             f"`bk-sdm-*` teachers, latent {latent_size}x{latent_size}, batch 1, fvcore MACs (with the "
             "SDPA handler). `table` = cost-table sum, `compact` = whole-model count of the extracted arch, "
             "`bk` = whole-model count of the BK-SDM teacher built from its diffusers config.\n",
             "| variant | params table | params compact | params bk | exact | GMACs table | GMACs bk | MAC error "
             "| MAC error (no attn) | output |", "|---|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for variant, r in rows.items():
        lines.append(f"| bk-sdm-{variant} | {r['params_table']:,} | {r['params_compact']:,} | {r['params_bk']:,} | "
                     f"{r['params_exact']} | {r['macs_table'] / 1e9:.3f} | {r['macs_bk'] / 1e9:.3f} | "
                     f"{r['macs_rel_error']:.2e} | {r['macs_no_attention_rel_error']:.2e} | {tuple(r['output_shape'])} |")
    lines.append(f"\nSD-1.5 teacher: {teacher_cost.params:,} params, {teacher_cost.macs / 1e9:.3f} GMACs. "
                 f"Cost table built in {table_s:.0f} s.\n\nReproduce: `python benchmarks/bk_sdm_removal.py`.\n")
    paths = write_results("bk_sdm_removal", data, "\n".join(lines), args.out)
    print("\n".join(lines[1:5]))
    print("wrote", *paths)


if __name__ == "__main__":
    main()
