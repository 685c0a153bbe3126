"""Feature-wise generative distillation of the surrogate blocks of a search space.

:func:`distill_blocks` trains every candidate of every unit to reproduce its teacher unit, locally or on Ray
workers, into a surrogate folder (see :mod:`.store`); :func:`load_surrogates` loads that folder into a
:class:`~tocsr_nas.supernet.Supernet`.
"""
from .config import DistillConfig, ExecutorConfig, LatentConfig, TimestepConfig
from .run import DistillReport, distill_blocks
from .store import CandidateRecord, SurrogateStore, load_surrogates

__all__ = ["CandidateRecord", "DistillConfig", "DistillReport", "ExecutorConfig", "LatentConfig", "SurrogateStore",
           "TimestepConfig", "distill_blocks", "load_surrogates"]
