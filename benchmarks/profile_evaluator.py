"""Where one distillation evaluation spends its time: cProfile over 20 archs, built the way the search builds it.

Candidates keep their initial weights (no surrogates folder: the same compute as trained ones). Prints the wall and CPU
time per arch and the top functions by cumulative and by own time; with ``--no-memo`` the prefix memo is off.

Usage::

    python benchmarks/profile_evaluator.py [--space tiny_ldm_unit_enum] [--no-memo]
"""
from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import tempfile
import time
from pathlib import Path

import torch

import search_spaces
from tocsr_nas.search import SearchConfig
from tocsr_nas.search.components import build_evaluators, evaluation_context
from tocsr_nas.search.config import ValidationConfig
from tocsr_nas.teachers import load_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="tiny_ldm_unit_enum")
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--no-memo", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = search_spaces.load(args.space)
    config = SearchConfig(space=args.space, surrogates=None, eps=[0.1], latent_size=16,
                          evaluators=["cost", "distillation"], validation=ValidationConfig(count=2, batch_size=2),
                          device="cpu")
    with tempfile.TemporaryDirectory() as work:
        context = evaluation_context(config, Path(work), space, load_teacher(space.teacher))
        evaluator = next(e for e in build_evaluators(config, context) if not e.cheap)
        if args.no_memo:
            evaluator.memo = None
        archs = list(itertools.islice(space.enumerate(), args.archs + 1))
        evaluator.evaluate(archs[0])  # the identity baseline, outside the profile
        profile, tick, cpu_tick = cProfile.Profile(), time.perf_counter(), time.process_time()
        profile.enable()
        for arch in archs[1:]:
            evaluator.evaluate(arch)
        profile.disable()
        wall, cpu = time.perf_counter() - tick, time.process_time() - cpu_tick
    print(f"{args.space}: {wall / args.archs:.3f} s wall, {cpu / args.archs:.3f} s CPU per arch "
          f"(memo {'off' if args.no_memo else 'on'})")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
