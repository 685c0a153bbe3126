"""The ``cost`` evaluator: params and GMACs from the cost table (exact, cheap); decides feasibility."""
from __future__ import annotations

import hashlib

from tocsr_nas.arch import Arch
from tocsr_nas.errors import ConfigError
from tocsr_nas.profiling.cost_table import CostTable, space_fingerprint

from .base import Evaluator, register_evaluator
from .context import EvaluationContext


class CostEvaluator(Evaluator):
    """Params (M), GMACs (both conventions) and reduction ratios vs the teacher; optional upper bounds."""

    name = "cost"
    cheap = True

    def __init__(self, table: CostTable, *, max_gmacs: float | None = None, max_params_m: float | None = None) -> None:
        for key, value in (("max_gmacs", max_gmacs), ("max_params_m", max_params_m)):
            if value is not None and value <= 0:
                raise ConfigError(f"must be > 0, got {value}", key=key)
        self.table, self.max_gmacs, self.max_params_m = table, max_gmacs, max_params_m

    def evaluate(self, arch: Arch, budget: int | None = None) -> dict[str, float]:
        cost = self.table.cost(arch)
        ratios = self.table.ratios(arch)
        return {"params_m": cost.params / 1e6, "gmacs": cost.gmacs, "gmacs_no_attention": cost.gmacs_no_attention,
                "params_ratio": ratios["params"], "macs_ratio": ratios["macs"]}

    def feasible(self, metrics: dict[str, float]) -> bool:
        return (self.max_gmacs is None or metrics["gmacs"] <= self.max_gmacs) and (
            self.max_params_m is None or metrics["params_m"] <= self.max_params_m)

    @property
    def fingerprint(self) -> str:
        text = f"{space_fingerprint(self.table.space)}:{self.max_gmacs}:{self.max_params_m}"
        return f"cost:{hashlib.sha1(text.encode()).hexdigest()[:12]}"


@register_evaluator("cost")
def cost_evaluator(context: EvaluationContext) -> CostEvaluator:
    """The search's ``cost`` evaluator: the cached cost table, bounded by ``max_gmacs``/``max_params_m``."""
    return CostEvaluator(context.get("cost_table"), max_gmacs=context.constraints.get("gmacs"),
                         max_params_m=context.constraints.get("params_m"))
