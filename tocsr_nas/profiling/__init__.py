"""Profiling: parameter and MAC counts of UNets and their blocks."""
from .macs import (
    MacCount,
    count_macs,
    count_macs_by_module,
    count_macs_by_operator,
    count_macs_ptflops,
    count_params,
    sdpa_macs,
)

__all__ = ["MacCount", "count_macs", "count_macs_by_module", "count_macs_by_operator", "count_macs_ptflops",
           "count_params", "sdpa_macs"]
