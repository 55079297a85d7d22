"""Pseudo-label diagnostics against ground truth (SPEC section 4), as flat dicts of floats.

Used every round when true ids are known (bundled readers, synthetic data). Pure functions:
integer arrays in, ``{name: float}`` out, names prefixed (``"visible/ari"``) for logging.

Conventions:
- pseudo-labels are ints, ``-1`` = DBSCAN noise, clusters ``0..C-1``;
- *noise as singletons*: every noise sample is its own cluster (the fair reading: noise is
  not one big cluster); *noise as one class*: all ``-1`` samples form one cluster, which is
  what the official MMM code printed (sklearn's ARI on the raw labels);
- a cluster's *majority id* is its most frequent true id, ties broken towards the smallest
  id; a cluster index with no member has no majority id.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "correspondence_diagnostics",
    "cross_camera_information",
    "cross_modality_information",
    "majority_ids",
    "noise_as_singletons",
    "pseudo_label_diagnostics",
    "unified_labels",
]


def _key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _labels(name: str, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {values.dtype}")
    return values.astype(np.int64)


def _check_pair(labels: np.ndarray, true_ids: np.ndarray, name: str) -> None:
    if labels.shape != true_ids.shape:
        raise ValueError(
            f"{name}: pseudo-labels {labels.shape} and true ids {true_ids.shape} differ in shape"
        )
    if labels.size == 0:
        raise ValueError(f"{name}: no samples")
    if (labels < -1).any():
        raise ValueError(f"{name}: pseudo-labels below -1 (only -1 may mark noise)")


def noise_as_singletons(labels: np.ndarray) -> np.ndarray:
    """Relabel every ``-1`` as a new cluster of its own (ids after the largest label)."""
    labels = _labels("labels", labels)
    out = labels.copy()
    noise = out < 0
    out[noise] = out.max(initial=-1) + 1 + np.arange(noise.sum())
    return out


def pseudo_label_diagnostics(
    labels: np.ndarray, true_ids: np.ndarray, prefix: str = ""
) -> dict[str, float]:
    """ARI / NMI of pseudo-labels against true ids, cluster count and noise ratio.

    Args:
        labels: (N,) int pseudo-labels, -1 = noise.
        true_ids: (N,) int ground-truth identities.
        prefix: prepended to every key as ``prefix/...`` (e.g. ``"visible"``).

    Returns:
        ``ari`` (noise as singletons), ``ari_noise_as_class`` (noise one cluster, the
        official code's number), ``nmi`` (arithmetic-mean NMI, noise as singletons),
        ``clusters`` (non-noise clusters), ``noise_ratio`` (fraction of -1) and ``samples``.
    """
    labels = _labels("labels", labels)
    true_ids = _labels("true_ids", true_ids)
    _check_pair(labels, true_ids, prefix or "pseudo-labels")
    singletons = noise_as_singletons(labels)
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # 1-2 s

    return {
        _key(prefix, "ari"): float(adjusted_rand_score(true_ids, singletons)),
        _key(prefix, "ari_noise_as_class"): float(adjusted_rand_score(true_ids, labels)),
        _key(prefix, "nmi"): float(normalized_mutual_info_score(true_ids, singletons)),
        _key(prefix, "clusters"): float(np.unique(labels[labels >= 0]).size),
        _key(prefix, "noise_ratio"): float(np.mean(labels < 0)),
        _key(prefix, "samples"): float(labels.size),
    }


def majority_ids(labels: np.ndarray, true_ids: np.ndarray, num_clusters: int) -> np.ndarray:
    """Most frequent true id of each cluster ``0..num_clusters-1``.

    Args:
        labels: (N,) int pseudo-labels, -1 = noise (ignored).
        true_ids: (N,) int true identities.
        num_clusters: number of cluster slots (>= max label + 1).

    Returns:
        (num_clusters,) int64: the majority id (ties -> smallest id), or -1 for a cluster
        with no member. When true ids can be -1 themselves, compare with care.
    """
    labels = _labels("labels", labels)
    true_ids = _labels("true_ids", true_ids)
    _check_pair(labels, true_ids, "majority_ids")
    if labels.max(initial=-1) >= num_clusters:
        raise ValueError(f"label {labels.max()} outside {num_clusters} clusters")
    member = labels >= 0
    id_values, id_codes = np.unique(true_ids[member], return_inverse=True)
    counts = np.zeros((num_clusters, max(id_values.size, 1)), dtype=np.int64)
    np.add.at(counts, (labels[member], id_codes), 1)
    majority = np.full(num_clusters, -1, dtype=np.int64)
    present = counts.sum(axis=1) > 0
    majority[present] = id_values[counts[present].argmax(axis=1)]  # argmax: first = smallest id
    return majority


def unified_labels(
    visible_labels: np.ndarray,
    infrared_labels: np.ndarray,
    r2v: np.ndarray,
    num_visible_clusters: int,
) -> np.ndarray:
    """Labels of both modalities in one space: visible rows then infrared rows.

    Visible cluster ``a`` keeps label ``a``; infrared cluster ``b`` becomes ``r2v[b]`` when
    matched (``r2v[b] >= 0``), else the fresh label ``num_visible_clusters + b``. Noise stays
    ``-1`` (callers decide how to count it). Shape (Nv + Nr,), int64.
    """
    visible_labels = _labels("visible_labels", visible_labels)
    infrared_labels = _labels("infrared_labels", infrared_labels)
    r2v = _labels("r2v", r2v)
    if infrared_labels.max(initial=-1) >= r2v.size:
        raise ValueError(
            f"infrared label {infrared_labels.max()} outside r2v of {r2v.size} clusters"
        )
    if r2v.size and r2v.max() >= num_visible_clusters:
        raise ValueError(f"r2v names visible cluster {r2v.max()} of {num_visible_clusters}")
    mapped = np.where(r2v >= 0, r2v, num_visible_clusters + np.arange(r2v.size))
    infrared = np.where(infrared_labels >= 0, mapped[np.maximum(infrared_labels, 0)], -1)
    return np.concatenate([visible_labels, infrared])


def _invert(v2r: np.ndarray, num_infrared_clusters: int) -> np.ndarray:
    """r2v from v2r: infrared b -> the visible cluster matched to it (smallest such a), or -1."""
    r2v = np.full(num_infrared_clusters, -1, dtype=np.int64)
    matched = np.flatnonzero(v2r >= 0)
    # Assign in reverse so that, for an infrared cluster matched several times, the smallest
    # visible index is written last and wins.
    r2v[v2r[matched[::-1]]] = matched[::-1]
    return r2v


def _pair_accuracy(
    targets: np.ndarray,
    source_majority: np.ndarray,
    source_present: np.ndarray,
    target_majority: np.ndarray,
    target_present: np.ndarray,
) -> tuple[float, float]:
    """(fraction of matched pairs with equal majority ids, number of matched pairs)."""
    matched = np.flatnonzero(targets >= 0)
    if matched.size == 0:
        return float("nan"), 0.0
    partner = targets[matched]
    agree = (
        source_present[matched]
        & target_present[partner]
        & (source_majority[matched] == target_majority[partner])
    )
    return float(agree.mean()), float(matched.size)


def correspondence_diagnostics(
    visible_labels: np.ndarray,
    infrared_labels: np.ndarray,
    visible_true: np.ndarray,
    infrared_true: np.ndarray,
    v2r: np.ndarray,
    r2v: np.ndarray | None = None,
    prefix: str = "correspondence",
) -> dict[str, float]:
    """Quality of cross-modality cluster correspondences against true ids.

    Args:
        visible_labels: (Nv,) int visible pseudo-labels, -1 = noise, clusters 0..Cv-1.
        infrared_labels: (Nr,) int infrared pseudo-labels, -1 = noise, clusters 0..Cr-1.
        visible_true, infrared_true: (Nv,), (Nr,) int true ids (one id space).
        v2r: (Cv,) int, visible cluster -> matched infrared cluster, or -1 (unmatched).
        r2v: (Cr,) int, infrared cluster -> matched visible cluster, or -1. When None it is
            inverted from `v2r` (an infrared cluster matched by several visible clusters
            takes the smallest visible index).
        prefix: key prefix.

    Returns:
        ``v2r_accuracy``: fraction of matched pairs ``(a, v2r[a])`` whose majority true ids
        agree (an empty cluster never agrees); NaN when nothing is matched; ``v2r_pairs``:
        number of matched pairs; ``r2v_accuracy`` / ``r2v_pairs`` likewise for `r2v`;
        ``unified_ari`` and ``unified_nmi``: ARI / NMI against true ids of the unified labels
        over both modalities (see `unified_labels`; noise as singletons);
        ``unified_ari_noise_as_class``: the same ARI with all noise as one class.
    """
    visible_labels = _labels("visible_labels", visible_labels)
    infrared_labels = _labels("infrared_labels", infrared_labels)
    visible_true = _labels("visible_true", visible_true)
    infrared_true = _labels("infrared_true", infrared_true)
    _check_pair(visible_labels, visible_true, "visible")
    _check_pair(infrared_labels, infrared_true, "infrared")
    v2r = _labels("v2r", v2r)
    num_visible = v2r.size
    if visible_labels.max(initial=-1) >= num_visible:
        raise ValueError(
            f"visible label {visible_labels.max()} outside v2r of {num_visible} clusters"
        )
    num_infrared = int(infrared_labels.max(initial=-1)) + 1
    if r2v is not None:
        r2v = _labels("r2v", r2v)
        num_infrared = max(num_infrared, r2v.size)
    if v2r.size:
        num_infrared = max(num_infrared, int(v2r.max()) + 1)
    if r2v is None:
        r2v = _invert(v2r, num_infrared)
    elif r2v.size < num_infrared:
        raise ValueError(f"r2v has {r2v.size} entries, infrared clusters need {num_infrared}")

    visible_majority = majority_ids(visible_labels, visible_true, num_visible)
    infrared_majority = majority_ids(infrared_labels, infrared_true, num_infrared)

    visible_present = np.bincount(visible_labels[visible_labels >= 0], minlength=num_visible) > 0
    infrared_present = (
        np.bincount(infrared_labels[infrared_labels >= 0], minlength=num_infrared) > 0
    )
    v2r_accuracy, v2r_pairs = _pair_accuracy(
        v2r, visible_majority, visible_present, infrared_majority, infrared_present
    )
    r2v_accuracy, r2v_pairs = _pair_accuracy(
        r2v, infrared_majority, infrared_present, visible_majority, visible_present
    )

    unified = unified_labels(visible_labels, infrared_labels, r2v, num_visible)
    true_ids = np.concatenate([visible_true, infrared_true])
    singletons = noise_as_singletons(unified)
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # 1-2 s

    return {
        _key(prefix, "v2r_accuracy"): v2r_accuracy,
        _key(prefix, "v2r_pairs"): v2r_pairs,
        _key(prefix, "r2v_accuracy"): r2v_accuracy,
        _key(prefix, "r2v_pairs"): r2v_pairs,
        _key(prefix, "unified_ari"): float(adjusted_rand_score(true_ids, singletons)),
        _key(prefix, "unified_ari_noise_as_class"): float(adjusted_rand_score(true_ids, unified)),
        _key(prefix, "unified_nmi"): float(normalized_mutual_info_score(true_ids, singletons)),
    }


def cross_modality_information(
    visible_features: np.ndarray,
    infrared_features: np.ndarray,
    visible_true: np.ndarray,
    infrared_true: np.ndarray,
    prefix: str = "xmodal",
    max_queries: int = 2000,
) -> dict[str, float]:
    """How much cross-modality identity information the features carry, whatever the labels.

    The unsupervised method can only bootstrap from features in which a person's infrared
    images already lie nearer to their own visible images than to others'. This measures it
    with the true ids (synthetic data, bundled readers), independently of clustering:

    - ``centroid_match_accuracy``: Hungarian matching of the per-identity centroids (normalised
      mean features) across modalities by cosine similarity, fraction of identities matched to
      themselves: what the matching step would reach with perfect clusters;
    - ``nn_accuracy``: fraction of infrared samples whose nearest visible sample (cosine) has
      their identity (at most `max_queries` queries, evenly spaced, for large sets);
    - ``chance``: 1 / number of identities present in both modalities (the expected value of
      both for features without cross-modality information).

    Args:
        visible_features, infrared_features: (Nv, d), (Nr, d) float features (any norm).
        visible_true, infrared_true: (Nv,), (Nr,) int true ids (one id space).
    """
    from scipy.optimize import linear_sum_assignment

    visible_true = _labels("visible_true", visible_true)
    infrared_true = _labels("infrared_true", infrared_true)
    fv = _normalised(visible_features, len(visible_true), "visible_features")
    fr = _normalised(infrared_features, len(infrared_true), "infrared_features")
    shared = np.intersect1d(visible_true, infrared_true)
    if shared.size == 0:
        nan = float("nan")
        return {_key(prefix, k): nan for k in ("centroid_match_accuracy", "nn_accuracy", "chance")}
    centroids = []
    for features, true in ((fv, visible_true), (fr, infrared_true)):
        index = np.searchsorted(shared, true)
        keep = (index < shared.size) & (shared[np.minimum(index, shared.size - 1)] == true)
        sums = np.zeros((shared.size, features.shape[1]))
        np.add.at(sums, index[keep], features[keep])
        centroids.append(sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12))
    rows, cols = linear_sum_assignment(-(centroids[0] @ centroids[1].T))
    centroid_accuracy = float(np.mean(rows == cols))
    queries = _spaced(np.flatnonzero(np.isin(infrared_true, shared)), max_queries)
    hits = _nearest_hits(queries, fr, infrared_true, fv, visible_true)
    return {
        _key(prefix, "centroid_match_accuracy"): centroid_accuracy,
        _key(prefix, "nn_accuracy"): hits / max(queries.size, 1),
        _key(prefix, "chance"): 1.0 / shared.size,
    }


def cross_camera_information(
    features: np.ndarray,
    true_ids: np.ndarray,
    camids: np.ndarray,
    labels: np.ndarray | None = None,
    prefix: str = "xcam",
    max_queries: int = 2000,
) -> dict[str, float]:
    """Whether the features find a person across the cameras of one modality.

    Re-ID clusters that follow cameras (each camera's tracklet a cluster of its own) teach
    nothing that carries across cameras, let alone across modalities. With the true ids:

    - ``nn_accuracy``: fraction of samples whose nearest sample *from another camera* has
      their identity (queries: samples whose identity appears in another camera; at most
      `max_queries`, evenly spaced);
    - ``split``: with the round's pseudo-`labels`, the fraction of identities seen by more
      than one camera whose clustered samples fall in more than one cluster (1 = every such
      person split, typically by camera); NaN without labels.

    Args:
        features: (N, d) float features (any norm); true_ids, camids: (N,) ints.
        labels: (N,) pseudo-labels (-1 = noise) or None.
    """
    true_ids = _labels("true_ids", true_ids)
    camids = _labels("camids", camids)
    f = _normalised(features, len(true_ids), "features")
    if camids.shape != true_ids.shape:
        raise ValueError(f"camids {camids.shape} and true_ids {true_ids.shape} must match")
    pairs = np.unique(np.stack([true_ids, camids], axis=1), axis=0)
    ids, cams_per_id = np.unique(pairs[:, 0], return_counts=True)
    multi = ids[cams_per_id > 1]
    queries = _spaced(np.flatnonzero(np.isin(true_ids, multi)), max_queries)
    hits = _nearest_hits(queries, f, true_ids, f, true_ids, groups=(camids, camids))
    split = float("nan")
    if labels is not None and multi.size:
        labels = _labels("labels", labels)
        counts = [np.unique(labels[(true_ids == i) & (labels >= 0)]).size for i in multi]
        split = float(np.mean(np.asarray(counts) > 1))
    return {
        _key(prefix, "nn_accuracy"): hits / queries.size if queries.size else float("nan"),
        _key(prefix, "split"): split,
    }


def _spaced(indices: np.ndarray, most: int) -> np.ndarray:
    """At most `most` of `indices`, evenly spaced (all of them when there are few)."""
    if indices.size <= most:
        return indices
    return indices[np.linspace(0, indices.size - 1, most).astype(np.int64)]


def _nearest_hits(
    queries: np.ndarray,
    query_features: np.ndarray,
    query_ids: np.ndarray,
    gallery_features: np.ndarray,
    gallery_ids: np.ndarray,
    groups: tuple[np.ndarray, np.ndarray] | None = None,
) -> int:
    """How many query rows `queries` have a nearest gallery row (largest dot product) of their
    own id; with (query, gallery) `groups`, gallery rows of the query's own group are skipped.
    In blocks of 512 queries, so the similarity matrix stays small."""
    hits = 0
    for start in range(0, queries.size, 512):
        block = queries[start : start + 512]
        sims = query_features[block] @ gallery_features.T
        if groups is not None:
            sims[groups[0][block][:, None] == groups[1][None, :]] = -np.inf
        hits += int(np.sum(gallery_ids[np.argmax(sims, axis=1)] == query_ids[block]))
    return hits


def _normalised(features: np.ndarray, rows: int, name: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)  # float32: the 1-NN product is the cost
    if features.ndim != 2 or features.shape[0] != rows:
        raise ValueError(f"{name} must be ({rows}, d), got shape {features.shape}")
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)
