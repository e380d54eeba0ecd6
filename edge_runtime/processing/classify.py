"""Classification postprocessing: top-k over dequantized scores."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edge_runtime.processing.labels import Labels
from edge_runtime.types import Classification


def top_k(scores: npt.NDArray[np.float32], k: int,
          min_score: float = 0.0) -> list[tuple[int, float]]:
    """The ``k`` best (index, score) pairs with score >= ``min_score``, best first.

    Ties are broken by the lower index so results are deterministic.
    """
    flat = scores.reshape(-1)
    k = min(k, flat.size)
    if k <= 0:
        return []
    # stable sort on (-score, index): lexsort sorts by the last key first
    order = np.lexsort((np.arange(flat.size), -flat.astype(np.float64)))[:k]
    return [(int(i), float(flat[i])) for i in order if flat[i] >= min_score]


def classify(scores: npt.NDArray[np.float32], labels: Labels, k: int,
             min_score: float) -> tuple[Classification, ...]:
    """Top-k classes with their labels."""
    return tuple(Classification(i, labels.name(i), s) for i, s in top_k(scores, k, min_score))
