"""Evaluation: ranking metrics, the SYSU-MM01 / RegDB protocols, pseudo-label diagnostics.

- `rank`: `eval_sysu`, `eval_regdb` (CMC, mAP, mINP over a distance matrix; pure NumPy);
- `protocols`: `evaluate_sysu`, `evaluate_regdb` over an extractor, `ProtocolResult`;
- `diagnostics`: ARI / NMI of pseudo-labels, cross-modality correspondence accuracy;
- `visualize`: ranked-list grid and HTML page, CMC curve;
"""

from mmm_core.evaluation.diagnostics import correspondence_diagnostics, pseudo_label_diagnostics
from mmm_core.evaluation.protocols import (
    ProtocolResult,
    TrialMetrics,
    evaluate_regdb,
    evaluate_sysu,
)
from mmm_core.evaluation.rank import eval_regdb, eval_sysu, top_k_ranked

__all__ = [
    "ProtocolResult",
    "TrialMetrics",
    "correspondence_diagnostics",
    "eval_regdb",
    "eval_sysu",
    "evaluate_regdb",
    "evaluate_sysu",
    "pseudo_label_diagnostics",
    "top_k_ranked",
]
