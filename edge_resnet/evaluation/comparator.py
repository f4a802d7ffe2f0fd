"""Run several backends on the same batches and compare each with a reference (Polygraphy's
Comparator shape): the one place the SDK compares two models' outputs.

Callers differ only in what they feed and what they decide: the FP16 check refuses a model that
disagrees, range-method scoring picks the best agreement, the mixed-precision search ranks layers
by KL, the export parity proof bounds the logit difference; :func:`edge_resnet.evaluation.evaluate`
streams whole image folders through the same statistics (:func:`~edge_resnet.evaluation.stats.
compare`). Any :class:`~edge_resnet.backends.base.Backend` can take part, including an ONNX model
held in memory (``OnnxRuntimeBackend(model_proto)``). Device side: Python 3.8, no torch.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from edge_resnet.backends.base import Backend, Handle
from edge_resnet.core import EdgeResnetError, InputError
from edge_resnet.evaluation.stats import Comparison, compare

__all__ = ["compare_backends", "run_backend"]


def run_backend(backend: Backend, batches: Iterable[np.ndarray],
                limit: Optional[int] = None) -> np.ndarray:
    """Logits (float32, images x classes) of ``backend`` on ``batches``; with ``limit``, only
    the first ``limit`` images are run. Two batches are in flight (``submit`` the next, then
    ``wait`` for the previous): a GPU backend runs one while the next is being copied in; CPU
    backends finish each inside ``submit``, so for them it is the plain loop."""
    chunks = []
    seen = 0
    in_flight: List[Handle] = []
    try:
        for batch in batches:
            if limit is not None:
                if seen >= limit:
                    break
                batch = batch[:limit - seen]
            in_flight.append(backend.submit(batch))
            seen += len(batch)
            if len(in_flight) == 2:
                chunks.append(backend.wait(in_flight.pop(0)).logits.astype(np.float32,
                                                                          copy=False))
        while in_flight:
            chunks.append(backend.wait(in_flight.pop(0)).logits.astype(np.float32, copy=False))
    except BaseException:
        for handle in in_flight:  # leave the backend with nothing in flight
            try:
                backend.wait(handle)
            except EdgeResnetError:
                pass
        raise
    if not chunks:
        raise InputError("no batch to run the model on")
    return np.concatenate(chunks)


def compare_backends(reference: Backend, candidates: Mapping[str, Backend],
                     batches: Sequence[np.ndarray], labels: Optional[np.ndarray] = None,
                     limit: Optional[int] = None) -> Dict[str, Comparison]:
    """Each candidate against ``reference`` on the same ``batches`` (and ``labels``, when the
    images have them): agreement, KL, cosine, |Δlogit| and, with labels, the paired top-1
    statistics. The reference runs once."""
    ref = run_backend(reference, batches, limit)
    truth = None if labels is None else np.asarray(labels)[:len(ref)]
    return {name: compare(ref, run_backend(backend, batches, limit), truth)
            for name, backend in candidates.items()}
