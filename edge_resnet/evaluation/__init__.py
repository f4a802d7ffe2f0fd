"""Accuracy of every precision against the FP32 reference: metrics, evaluation, reports, gate.

``evaluate(reference, candidates, data_dir, max_drop=..., max_drop_upper=..., min_agreement=...)``
returns an :class:`EvalReport`; ``write_plots`` draws its PNGs (matplotlib, imported only then)
and ``write_report`` writes it as JSON and Markdown. ``compare`` is the paired comparison of two
models' logits (agreement, KL, exact McNemar, bootstrap interval of the drop) that every stage
can reuse. Imports numpy only (device side).
"""

from edge_resnet.evaluation.evaluate import (ModelLike, PredictResult, check_same_labels, evaluate,
                                             named_models, predict)
from edge_resnet.evaluation.gates import GateBreach, apply_gates
from edge_resnet.evaluation.metrics import (AgreementStats, agreement_stats, cosine_similarity,
                                            kl_divergence, log_softmax, max_abs_diff,
                                            per_class_accuracy, softmax, top1_agreement,
                                            topk_accuracy, topk_correct)
from edge_resnet.evaluation.plots import write_plots
from edge_resnet.evaluation.report import EvalReport, ModelResult, report_paths, write_report
from edge_resnet.evaluation.stats import (Comparison, PairedTop1, bootstrap_drop_interval, compare,
                                          mcnemar_exact, paired_top1)

__all__ = [
    "AgreementStats",
    "Comparison",
    "EvalReport",
    "GateBreach",
    "ModelLike",
    "ModelResult",
    "PairedTop1",
    "PredictResult",
    "agreement_stats",
    "apply_gates",
    "bootstrap_drop_interval",
    "check_same_labels",
    "compare",
    "cosine_similarity",
    "evaluate",
    "kl_divergence",
    "log_softmax",
    "max_abs_diff",
    "mcnemar_exact",
    "named_models",
    "paired_top1",
    "per_class_accuracy",
    "predict",
    "report_paths",
    "softmax",
    "top1_agreement",
    "topk_accuracy",
    "topk_correct",
    "write_plots",
    "write_report",
]
