"""Agreement on categorical answers: Cohen's kappa for two annotators (scikit-learn),
Krippendorff's alpha (nominal) for more, with missing answers allowed."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence


def agreement(ratings: Sequence[Sequence[Hashable | None]]) -> float | None:
    """Chance-corrected agreement of ``ratings[annotator][item]`` (None: no answer).

    Two annotators: Cohen's kappa over the items both answered. More: Krippendorff's alpha
    (nominal), which uses every item answered by at least two. When every answer is the same
    category the chance correction is undefined (0/0): that is perfect agreement, 1.0.
    None when no item has two answers."""
    if len(ratings) < 2:
        return None
    cats = sorted({r for row in ratings for r in row if r is not None}, key=str)
    if len(ratings) == 2:
        pairs = [(a, b) for a, b in zip(*ratings, strict=True)
                 if a is not None and b is not None]
        if not pairs:
            return None
        if len({v for pair in pairs for v in pair}) == 1:
            return 1.0
        from sklearn.metrics import cohen_kappa_score

        a, b = zip(*pairs, strict=True)
        return float(cohen_kappa_score([str(x) for x in a], [str(x) for x in b]))
    codes = {c: i for i, c in enumerate(cats)}
    matrix = [[math.nan if r is None else float(codes[r]) for r in row] for row in ratings]
    paired = [i for i in range(len(matrix[0]))
              if sum(not math.isnan(row[i]) for row in matrix) >= 2]
    if not paired:
        return None
    if len({row[i] for row in matrix for i in paired if not math.isnan(row[i])}) == 1:
        return 1.0
    import krippendorff

    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"))
