"""Single- and multi-memory cluster banks with an explicit ``reset`` / ``update`` lifecycle."""

from mmm_core.memory.bank import ClusterMemory, occurrence_waves
from mmm_core.memory.multi import MultiMemory, multi_memory_logits, slot_similarities

__all__ = [
    "ClusterMemory",
    "MultiMemory",
    "multi_memory_logits",
    "occurrence_waves",
    "slot_similarities",
]
