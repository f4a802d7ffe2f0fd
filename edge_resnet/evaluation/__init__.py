"""Accuracy of every precision against the FP32 reference: metrics, evaluation, reports, gate.

``evaluate(reference, candidates, data_dir, max_drop=...)`` returns an :class:`EvalReport`;
``write_report`` writes it as JSON and Markdown. Imports numpy only (device side).
"""

from edge_resnet.evaluation.evaluate import (ModelLike, PredictResult, check_same_labels, evaluate,
                                             named_models, predict)
from edge_resnet.evaluation.metrics import (AgreementStats, agreement_stats, cosine_similarity,
                                            kl_divergence, log_softmax, max_abs_diff,
                                            per_class_accuracy, softmax, top1_agreement,
                                            topk_accuracy, topk_correct)
from edge_resnet.evaluation.report import EvalReport, ModelResult, report_paths, write_report

__all__ = [
    "AgreementStats",
    "EvalReport",
    "ModelLike",
    "ModelResult",
    "PredictResult",
    "agreement_stats",
    "check_same_labels",
    "cosine_similarity",
    "evaluate",
    "kl_divergence",
    "log_softmax",
    "max_abs_diff",
    "named_models",
    "per_class_accuracy",
    "predict",
    "report_paths",
    "softmax",
    "top1_agreement",
    "topk_accuracy",
    "topk_correct",
    "write_report",
]
