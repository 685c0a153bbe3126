"""``tocsr-nas search`` (run or resume a search), ``pareto`` (its Pareto set) and ``extract`` (the winner)."""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ..device import add_device_args, device_overrides, resolve_device, resolve_dtype

if TYPE_CHECKING:
    from ..search.config import SearchConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    search = subparsers.add_parser(
        "search", help="search a space (resumes when --out holds an earlier run)",
        description="Search a space with a strategy; every trial goes to OUT/trials.jsonl. Re-running the same "
                    "command resumes a killed search exactly (no trial lost or repeated; the same proposals as an "
                    "uninterrupted run); a larger --budget continues it. A folder searched with other inputs "
                    "(surrogates, validation set, strategy, seed, ...) is refused. One process per folder.",
        epilog="Example: tocsr-nas search --space tiny_ldm --strategy bo --eps 0.05 --budget 100 "
               "--surrogates runs/x/surrogates --out runs/x/search")
    search.add_argument("--config", help="a YAML with SearchConfig fields; flags below override it")
    search.add_argument("--out", required=True, help="the search folder")
    for flag, kind, text in (
        ("--space", str, "search space name or YAML (default tiny_ldm)"),
        ("--strategy", str, "random | evolution | nsga2 | bo | ... (default bo)"),
        ("--budget", int, "expensive evaluations (default 100)"),
        ("--batch-size", int, "archs per ask, evaluated in parallel (default 1)"),
        ("--seed", int, "seed of the strategy (default 0)"),
        ("--max-gmacs", float, "hard constraint on GMACs"),
        ("--max-params-m", float, "hard constraint on params (millions)"),
        ("--max-latency-ms", float, "hard constraint on latency per UNet call (ms; adds the latency evaluator)"),
        ("--eval-budget", int, "validation batches per evaluation (default all)"),
        ("--surrogates", str, "folder of trained surrogates (tocsr-nas distill-blocks)"),
    ):
        search.add_argument(flag, type=kind, help=text)
    search.add_argument("--eps", type=float, nargs="+", help="loss bound(s) of the epsilon-constraint method")
    search.add_argument("--evaluators", nargs="+", help="evaluator names, cheap ones first (default: cost "
                        "[latency] distillation); options only in --config")
    search.add_argument("--objectives", nargs=2, metavar=("LOSS", "COST"),
                        help="the two minimised metrics (default: loss gmacs; e.g. loss latency_ms)")
    search.add_argument("--optuna-journal", metavar="PATH",
                        help="mirror every trial into this Optuna journal file (watch: optuna-dashboard PATH)")
    search.add_argument("--executor", choices=["local", "ray"], help="where expensive evaluations run")
    search.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_args(search)
    search.set_defaults(func=run_search)

    pareto = subparsers.add_parser("pareto", help="the Pareto set (loss vs GMACs, or the search's objectives)",
                                   description="Print the Pareto-optimal complete trials of a search folder, for "
                                               "the objectives it minimised (loss vs GMACs by default, loss vs "
                                               "latency_ms for a latency search); latency columns when measured.",
                                   epilog="Example: tocsr-nas pareto runs/x/search --json")
    pareto.add_argument("folder")
    pareto.add_argument("--json", action="store_true", help="print JSON records")
    pareto.set_defaults(func=run_pareto)

    extract = subparsers.add_parser("extract", help="write the compact UNet of a search's pick",
                                    description="Extract the cheapest arch with loss <= eps (or a given arch) from "
                                                "the search's supernet and save it as a compact UNet folder.",
                                    epilog="Example: tocsr-nas extract runs/x/search --pick best --out runs/x/compact")
    extract.add_argument("folder")
    extract.add_argument("--pick", default="best", help="'best' (cheapest with loss <= eps) or an arch string")
    extract.add_argument("--eps", type=float, help="loss bound for --pick best (default: the search's first eps)")
    extract.add_argument("--out", required=True, help="folder for the compact UNet (must not exist)")
    extract.add_argument("--overwrite", action="store_true",
                         help="replace an existing compact-UNet folder at --out (atomically; nothing else is replaced)")
    add_device_args(extract)  # where the extracted compact UNet is loaded back and run once (a check)
    extract.set_defaults(func=run_extract)


def _config(args: argparse.Namespace) -> SearchConfig:
    """The search config from ``--config`` and the flags (validated; nothing is written)."""
    from ..config_io import read_mapping, validate  # noqa: PLC0415  (pydantic/yaml only when run)
    from ..search.config import SearchConfig  # noqa: PLC0415 (the search package imports every strategy)

    data = dict(read_mapping(args.config)) if args.config else {}
    for field in ("space", "strategy", "budget", "batch_size", "seed", "max_gmacs", "max_params_m", "max_latency_ms",
                  "eval_budget", "surrogates", "eps", "evaluators", "objectives"):
        value = getattr(args, field)
        if value is not None:
            data[field] = value
    if args.executor:
        data["executor"] = {**data.get("executor", {}), "kind": args.executor}
    data.update(device_overrides(args))
    return validate(SearchConfig, data, source=args.config or "command line")


def run_search(args: argparse.Namespace) -> int:
    from ..search.components import build_runner  # noqa: PLC0415 (heavy imports only for this command)
    from ..search.results import pareto_trials  # noqa: PLC0415

    config = _config(args)
    resolve_dtype(config.dtype, resolve_device(config.device))  # refused before anything is printed or written
    loss, cost = config.objectives
    print(f"eps (bound on {loss}): {', '.join(f'{e:g}' for e in config.eps)}"
          f"{'' if 'eps' in _given(args) else ' (default)'}; objectives: {loss}, {cost}")
    if args.optuna_journal:
        import importlib.util  # noqa: PLC0415

        from ..errors import ConfigError  # noqa: PLC0415

        if importlib.util.find_spec("optuna") is None:
            raise ConfigError("needs the package 'optuna' (pip install tocsr-nas[optuna])", key="--optuna-journal")
    runner = build_runner(config, args.out)
    if runner.resumed:
        print(f"resuming {args.out}: {runner.resumed} trials stored", flush=True)
    if args.optuna_journal:
        from ..search.optuna_journal import OptunaJournalMirror  # noqa: PLC0415

        runner.observers.append(OptunaJournalMirror(args.optuna_journal, runner.space, study_name=runner.out_dir.name,
                                                    objectives=config.objectives, records=runner.store.records))
        print(f"mirroring trials to {args.optuna_journal} (optuna-dashboard {args.optuna_journal})")
    frame = runner.run(progress=not args.quiet)
    complete = frame[frame.state == "complete"] if len(frame) else frame
    print(f"{len(frame)} trials ({len(complete)} complete) in {args.out}/trials.jsonl")
    meets = complete[complete[loss] <= config.eps[0]] if len(complete) and loss in complete else complete.iloc[:0]
    if meets.empty:
        best = f"; best {loss} {complete[loss].min():.4g}" if len(complete) and loss in complete else ""
        print(f"no complete trial meets {loss} <= eps {config.eps[0]:g}{best}")
    front = pareto_trials(args.out, loss=loss, cost=cost)
    if len(front):
        columns = list(dict.fromkeys(["trial_id", loss, cost, "gmacs", "params_m"]))
        columns += [c for c in ("latency_ms",) if c in front and c not in columns] + ["arch"]
        print(front[columns].to_string(index=False))
    return 0


def _given(args: argparse.Namespace) -> set[str]:
    """Config fields set by flags or by the --config file."""
    from ..config_io import read_mapping  # noqa: PLC0415

    data = set(read_mapping(args.config)) if args.config else set()
    return data | {k for k, v in vars(args).items() if v is not None}


def run_pareto(args: argparse.Namespace) -> int:
    from ..search.results import pareto_trials, search_objectives  # noqa: PLC0415 (heavy imports only here)

    front = pareto_trials(args.folder)
    if args.json:
        print(front.to_json(orient="records", indent=1))
    elif front.empty:
        print("no complete trials yet")
    else:
        loss, cost = search_objectives(args.folder)
        columns = ["trial_id", loss, "gmacs", "params_m", "params_ratio", "macs_ratio", "latency_ms", "latency_ratio"]
        print(f"Pareto set of {loss} vs {cost}:")
        print(front[[c for c in dict.fromkeys(columns) if c in front] + ["arch"]].to_string(index=False))
    return 0


def run_extract(args: argparse.Namespace) -> int:
    import search_spaces  # noqa: PLC0415

    from ..device import device_from_args  # noqa: PLC0415
    from ..locking import folder_lock  # noqa: PLC0415
    from ..search.components import (  # noqa: PLC0415 (heavy imports only for this command)
        compact_cost,
        extract_arch,
        run_compact_once,
    )
    from ..search.results import (  # noqa: PLC0415
        check_extract_target,
        pick_trial,
        search_config,
        search_surrogates,
    )

    device, dtype = device_from_args(args)
    config = search_config(args.folder)
    arch_text = pick_trial(args.folder, args.eps).arch if args.pick == "best" else args.pick
    search_spaces.load(config.space).parse(arch_text)  # a bad --pick is refused before anything is written
    surrogates = search_surrogates(args.folder)
    check_extract_target(args.out, overwrite=args.overwrite)
    with folder_lock(args.out):
        check_extract_target(args.out, overwrite=args.overwrite)  # again, now that no one else writes it
        arch = extract_arch(config.space, arch_text, surrogates, args.out)
    seconds = run_compact_once(args.out, device, dtype, config.latent_size)
    print(f"compact UNet loads and runs on {device} ({str(dtype).removeprefix('torch.')}): one denoising call "
          f"{seconds:.2f} s")
    cost = compact_cost(args.folder, config.space, arch)
    if cost is not None:
        print(f"compact UNet: {cost['params_m']:.1f}M params, {cost['gmacs']:.1f} GMACs at a {cost['latent_size']}x"
              f"{cost['latent_size']} latent vs the teacher's {cost['teacher_params_m']:.1f}M / "
              f"{cost['teacher_gmacs']:.1f} G ({cost['params_ratio']:.2f}x fewer params, "
              f"{cost['macs_ratio']:.2f}x fewer GMACs)")
    summary = {"arch": str(arch), "arch_id": arch.arch_id, "out": args.out, **winner_ratios(args.folder, arch.arch_id)}
    print(json.dumps(summary))  # the last line: machine-readable
    return 0


def winner_ratios(folder: str, arch_id: str) -> dict[str, float]:
    """How many times smaller/faster than the teacher the arch is (params, GMACs, latency), from its stored trial."""
    from ..search.store import read_trials  # noqa: PLC0415

    frame = read_trials(folder)
    rows = frame[frame.arch_id == arch_id] if len(frame) else frame
    if rows.empty:
        return {}
    row = rows.iloc[0]
    return {key: float(row[key]) for key in ("params_ratio", "macs_ratio", "latency_ratio", "params_m", "gmacs",
                                             "latency_ms") if key in row and row[key] == row[key]}
