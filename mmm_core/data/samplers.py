"""Camera-aware P x K identity sampler, one per modality.

Each batch holds P distinct pseudo-identities and K instances of each. Instances are drawn
round-robin over the identity's cameras (in a random camera order), so that a batch shows each
identity from as many cameras as it has; an identity with fewer than K images repeats images
only after every image was used once. Samples labelled -1 (DBSCAN noise) are never drawn.

The sampler owns no global state: it draws from ``numpy.random.default_rng(seed)`` afresh on
every iteration, so the same seed yields the same batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["IdentitySampler"]


_WARNED: set[str] = set()


def _warn_once(kind: str, message: str) -> None:
    if kind not in _WARNED:
        _WARNED.add(kind)
        log.warning(message)


class IdentitySampler:
    """Batches of dataset indices: `num_ids` labels x `num_instances` samples each.

    Args:
        labels: (N,) int pseudo-labels; -1 marks samples that must not be drawn.
        camids: (N,) int camera of each sample.
        num_ids: P, identities per batch (all identities, with repeats, if fewer exist).
        num_instances: K, samples per identity.
        num_batches: batches per iteration (the round's iterations).
        seed: seed of the generator used for each pass.
        camera_aware: spread each identity's K samples over its cameras.
    """

    def __init__(
        self,
        labels: np.ndarray,
        camids: np.ndarray,
        num_ids: int,
        num_instances: int,
        num_batches: int,
        *,
        seed: int = 0,
        camera_aware: bool = True,
    ) -> None:
        labels = np.asarray(labels)
        camids = np.asarray(camids)
        if labels.shape != camids.shape or labels.ndim != 1:
            raise ValueError(f"labels {labels.shape} and camids {camids.shape} must be (N,)")
        if num_ids < 1 or num_instances < 1 or num_batches < 1:
            raise ValueError("num_ids, num_instances and num_batches must be >= 1")
        valid = np.flatnonzero(labels >= 0)
        if len(valid) == 0:
            raise ValueError("no sample has a label >= 0: nothing to sample")
        self.num_ids = num_ids
        self.num_instances = num_instances
        self.num_batches = num_batches
        self.seed = seed
        self.camera_aware = camera_aware
        self.identities = np.unique(labels[valid])
        # For each identity: a list of index arrays, one per camera (or one for all).
        self._groups: list[list[np.ndarray]] = []
        order = valid[np.argsort(labels[valid], kind="stable")]
        bounds = np.searchsorted(labels[order], self.identities, side="left")
        ends = np.append(bounds[1:], len(order))
        for start, end in zip(bounds, ends, strict=True):
            members = order[start:end]
            if camera_aware:
                cams = camids[members]
                self._groups.append([members[cams == c] for c in np.unique(cams)])
            else:
                self._groups.append([members])
        self._warn_about_repeats()

    def _warn_about_repeats(self) -> None:
        """Say once per process when P x K asks for more than the labels hold."""
        count = len(self.identities)
        if count < self.num_ids:
            _warn_once(
                "ids",
                f"a batch asks for {self.num_ids} identities but the labels hold {count}: "
                "identities are drawn again within a batch (lower sampler.*_ids)",
            )
        small = sum(sum(len(m) for m in group) < self.num_instances for group in self._groups)
        if small:
            _warn_once(
                "instances",
                f"{small} of {count} identities have fewer than {self.num_instances} samples "
                "(sampler.*_instances): their samples repeat within a batch",
            )

    @property
    def batch_size(self) -> int:
        return self.num_ids * self.num_instances

    def __len__(self) -> int:
        return self.num_batches

    def _instances(self, group: list[np.ndarray], rng: np.random.Generator) -> list[int]:
        """K indices of one identity: round-robin over cameras, each camera shuffled."""
        queues = [list(rng.permutation(members)) for members in group]
        cam_order = rng.permutation(len(queues))
        chosen: list[int] = []
        while len(chosen) < self.num_instances:
            progressed = False
            for c in cam_order:
                if queues[c] and len(chosen) < self.num_instances:
                    chosen.append(int(queues[c].pop()))
                    progressed = True
            if not progressed:  # every image used once: start another pass
                queues = [list(rng.permutation(members)) for members in group]
        return chosen

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(self.seed)
        count = len(self.identities)
        for _ in range(self.num_batches):
            if count >= self.num_ids:
                picked = rng.choice(count, size=self.num_ids, replace=False)
            else:
                picked = np.concatenate(
                    [rng.permutation(count), rng.choice(count, self.num_ids - count)]
                )
            batch: list[int] = []
            for identity in picked:
                batch.extend(self._instances(self._groups[identity], rng))
            yield batch
