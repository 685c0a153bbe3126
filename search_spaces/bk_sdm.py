"""BK-SDM's block removals as archs of a search space that offers ``drop`` per unit (``sd15_bk.yaml``).

``base`` removes the second layer (resnet and attention) of every down and up block, ``small`` also the mid block,
``tiny`` also the innermost resolution level (its down sampler, which takes the level with it). Over SD-1.5 these
are exactly the UNets of BK-SDM-Base/Small/Tiny (the shipped ``bk-sdm-*`` teacher configs).
"""
from __future__ import annotations

import fnmatch

from tocsr_nas.arch import Arch
from tocsr_nas.errors import ConfigError

from .space import DROP_OP, SearchSpace

BASE = ("down_blocks.*.resnets.1", "down_blocks.*.attentions.1", "up_blocks.*.resnets.1", "up_blocks.*.attentions.1")
VARIANTS = ("base", "small", "tiny")


def removed_units(space: SearchSpace, variant: str) -> list[str]:
    """The unit paths that BK-SDM ``variant`` removes from ``space``'s teacher."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown BK-SDM variant '{variant}'", key="variant", allowed=VARIANTS)
    units = [u for d in space.decisions for u in d.units]
    patterns = list(BASE)
    if variant in ("small", "tiny"):
        patterns.append("mid_block.*")
    if variant == "tiny":
        innermost = max(int(u.split(".")[1]) for u in units if u.startswith("down_blocks.") and ".downsamplers." in u)
        patterns.append(f"down_blocks.{innermost}.downsamplers.0")
    return [u for u in units if any(fnmatch.fnmatchcase(u, p) for p in patterns)]


def bk_sdm_arch(space: SearchSpace, variant: str) -> Arch:
    """The arch of ``space`` that drops what BK-SDM ``variant`` removes (every other decision keeps the teacher)."""
    removed = set(removed_units(space, variant))
    labels = {}
    for decision in space.decisions:
        hit = removed.intersection(decision.units)
        if not hit:
            continue
        drop = next((c.label for c in decision.candidates if c.op == DROP_OP and not c.hparams), None)
        if drop is None or len(hit) != len(decision.units):
            raise ConfigError(f"space cannot express BK-SDM-{variant}: decision '{decision.name}' must offer 'drop' "
                              "for exactly the units it removes", source=space.source, key=decision.name)
        labels[decision.name] = drop
    return space.arch(labels)
