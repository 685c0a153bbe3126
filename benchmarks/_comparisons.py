"""The proxy and BO comparisons of issue 14 as ablation sections: read from the committed result files.

``proxy_validity.json`` (``benchmarks/proxy_validity.py score``) and ``search_efficiency.json``
(``benchmarks/search_efficiency.py``) hold the measurements; this module draws one figure each and states the
answer, so ``ablations.md`` answers them next to the ablations of ``experiments/`` without re-running anything.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_evals  # noqa: E402

DEFAULT_PROXY = "distill eps uniform, /identity (default)"
RANDOM = "random"
HV_TARGET, HV_BUDGET = 0.97, 50  # the HV criterion


@dataclass(frozen=True)
class Section:
    """One question: its title, the figure (relative to the results folder), the command and the answer."""

    question: str
    figure: str
    command: str
    answer: str
    data: dict[str, Any]


def proxy_section(results: Path, figures: Path) -> Section | None:
    """Does a lower proxy loss give a better SR model? Final PSNR-Y against the default proxy and against GMACs."""
    path = results / "proxy_validity.json"
    if not path.is_file():
        return None
    study = json.loads(path.read_text())
    psnr: dict[str, list[float]] = {}
    gmacs: dict[str, float] = {}
    for run in study["runs"]:
        psnr.setdefault(run["arch_id"], []).append(run["psnr_y"])
        gmacs[run["arch_id"]] = run["gmacs"]
    archs = sorted(psnr)
    final = np.array([np.mean(psnr[a]) for a in archs])
    proxy = np.array([study["proxies"][DEFAULT_PROXY][a] for a in archs])
    cost = np.array([gmacs[a] for a in archs])
    tau = {c["proxy"]: c["kendall_tau"] for c in study["correlations"]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x, label, key in ((axes[0], proxy, "default proxy loss (relative to all-identity)", DEFAULT_PROXY),
                              (axes[1], cost, "GMACs", "GMACs")):
        ax.scatter(x, final, color="tab:blue")
        ax.set_xlabel(label)
        ax.set_title(f"rank agreement with PSNR: Kendall tau {tau[key]:.3f}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final PSNR-Y (dB), CSet5 + CSet14 crops")
    bicubic = study["references"]["bicubic"]
    for ax in axes:
        ax.axhline(bicubic, color="grey", ls="--", lw=0.8, label="bicubic")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"{len(archs)} archs through SR adaptation + one-step distillation "
                 f"({study['settings']['adapt_steps']} + {study['settings']['onestep_steps']} steps)")
    figure = figures / "proxy_validity.png"
    figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110, bbox_inches="tight")
    plt.close(fig)
    best = max((c for c in study["correlations"] if c["proxy"] != "GMACs"), key=lambda c: c["kendall_tau"])
    answer = (f"Yes, at this budget. Over {len(archs)} archs (teacher to all-identity), the default proxy ranks the "
              f"final one-step PSNR-Y with Kendall tau {tau[DEFAULT_PROXY]:.3f} (GMACs alone: {tau['GMACs']:.3f}); "
              f"the best proxy measured, '{best['proxy']}', reaches {best['kendall_tau']:.3f}. Every model beats "
              f"bicubic ({bicubic:.2f} dB) by {final.min() - bicubic:.2f} to {final.max() - bicubic:.2f} dB. "
              "Details, the noise floor and the other proxies: `proxy_validity.md`.")
    return Section("Does a lower proxy loss give a better SR model after adaptation and one-step distillation?",
                   f"{figures.name}/{figure.name}", study["command"], answer,
                   {"archs": archs, "psnr_y": final.tolist(), "proxy": proxy.tolist(), "gmacs": cost.tolist(),
                    "kendall_tau": tau})


def bo_section(results: Path, figures: Path, strategies: list[str]) -> Section | None:
    """Does the BO that uses the distillation prior find the front in fewer evaluations? Mean HV-ratio curves."""
    path = results / "search_efficiency.json"
    if not path.is_file():
        return None
    study = json.loads(path.read_text())
    spaces = study["spaces"]
    fig, axes = plt.subplots(1, len(spaces), figsize=(6 * len(spaces), 4.2), squeeze=False)
    lines, data = [], {}
    for ax, (space, result) in zip(axes[0], spaces.items(), strict=True):
        rows = {r["strategy"]: r for r in result["strategies"]}
        shown = [s for s in [RANDOM, *strategies] if s in rows]
        for name in shown:
            curve = rows[name]["curve_mean"]
            ax.plot(range(1, len(curve) + 1), curve, lw=1.6, label=f"{name} (n={rows[name]['seeds']})")
        ax.axhline(0.95, color="grey", ls=":", lw=0.8)
        ax.axhline(HV_TARGET, color="grey", ls="--", lw=0.8)
        ax.axvline(HV_BUDGET, color="grey", ls="--", lw=0.8)
        ax.set_ylim(0.6, 1.0)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("hypervolume ratio to the true front (mean over seeds)")
        ax.set_title(f"{space} ({result['archs']} archs)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        data[space] = {name: {k: rows[name][k] for k in ("evals_to_95_median", "hv@50_mean", "hv@50_ci95")}
                       for name in shown}
        random = rows[RANDOM]
        parts = [f"`{name}` median {fmt_evals(rows[name]['evals_to_95_median'], rows[name]['budget'])} "
                 f"evaluations to 95% and HV@50 "
                 f"{rows[name]['hv@50_mean']:.3f}" for name in strategies if name in rows]
        lines.append(f"{space}: random needs a median {fmt_evals(random['evals_to_95_median'], random['budget'])} "
                     f"evaluations to 95% of the true front's hypervolume (HV@50 {random['hv@50_mean']:.3f}); "
                     + "; ".join(parts) + ".")
    figure = figures / "search_efficiency.png"
    figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110, bbox_inches="tight")
    plt.close(fig)
    answer = (" ".join(lines) + " The `bo` and `bo-prior` rows differ only in the prior (GP mean and input); the "
              "last row also spends the initial design on the prior's front and cycles the eps loosest first. "
              "Per-criterion verdicts (median <= half of random's, HV@50 >= 0.97, >= random at every budget), "
              "confidence intervals and every other strategy: `search_efficiency.md`.")
    command = next(r["command"] for r in reversed(study["runs"]) if strategies[-1] in r["command"])
    return Section("Does a BO that uses what distillation measured find the front in fewer evaluations?",
                   f"{figures.name}/{figure.name}", command, answer, data)


def markdown(section: Section) -> list[str]:
    """The section's lines in ``ablations.md``."""
    return [f"## {section.question}", "", f"![{Path(section.figure).stem}]({section.figure})", "",
            f"Measured by: `{section.command}`", "", f"**Answer.** {section.answer}", ""]
