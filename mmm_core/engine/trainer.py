"""One training round of either stage, with a visible lifecycle.

`Trainer` owns the model, the optimiser and the scheduler of the current stage. A round is
``start_round(targets)`` -> ``iters`` x (`training_step` -> optimiser step -> `after_step`,
the memory update) -> ``end_round()``. `training_step` runs the network once and hands the
features to the stage's step, `stage1_step` or `stage2_step` (the methods to override for a
new loss), which returns a `StepOutput`.

Stage 1 (CMC): ``NCE(f^v; M^v) + NCE(f^r; M^r) + lambda_cmc (NCE(f^v; M^j) + NCE(f^r; M^j))``.
Stage 2 (MMLM + SCA): ``L_MML^v + L_MML^r + lambda_cross L_cross + lambda_sca L_SCA``.
Memories are updated explicitly after ``optimizer.step()`` (never inside backward).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmm_core.engine import distributed
from mmm_core.engine.targets import RoundTargets, Stage1Targets, Stage2Targets
from mmm_core.losses import cluster_nce, cross_modality_loss, multi_memory_loss, sca_loss
from mmm_core.memory import ClusterMemory, MultiMemory

__all__ = ["LossWeights", "Memories", "Shard", "StepOutput", "Trainer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LossWeights:
    lambda_cmc: float = 1.0
    lambda_cross: float = 1.0
    lambda_sca: float = 0.5


@dataclass
class Memories:
    """The round's memory banks (rebuilt from clustering at the start of every round)."""

    visible: ClusterMemory | MultiMemory
    infrared: ClusterMemory | MultiMemory
    joint: ClusterMemory | None = None


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # views (B, V, 3, H, W), labels, index


@dataclass(frozen=True)
class _Forward:
    """One batch through the network: L2-normalised float32 features, one row per view."""

    features_v: torch.Tensor
    features_r: torch.Tensor
    labels_v: torch.Tensor
    labels_r: torch.Tensor
    index_v: torch.Tensor  # dataset row of each visible feature
    index_r: torch.Tensor


@dataclass(frozen=True)
class StepOutput:
    """What one training step hands to the optimiser and to the memory update.

    ``loss`` is optimised; ``losses`` holds its named components (for the logs);
    ``forward`` the features and labels the memories are updated with; ``joint_v`` /
    ``joint_r`` the CMC joint labels of the batch (stage 1 with CMC only).
    """

    loss: torch.Tensor
    losses: dict[str, torch.Tensor]
    forward: _Forward
    joint_v: torch.Tensor | None = None
    joint_r: torch.Tensor | None = None


class Trainer:
    """Trains `model` round by round. Devices are arguments; nothing moves implicitly.

    Args:
        model: the two-stream network (already on `device`; DDP-wrapped by the caller if any).
        device: where batches and memories live.
        lr, weight_decay, step_size, gamma: Adam and StepLR (stepped once per round).
        schedule_per: ``"stage"``: StepLR counts the rounds of the current stage;
            ``"run"``: it counts from the run's first round (see `start_stage`).
        temperature, momentum: memory temperature tau and momentum mu.
        weights: loss weights.
        autocast: the network's autocast dtype (None = full precision; ``torch.bfloat16`` on
            CPU or CUDA; ``torch.float16`` on CUDA, with a gradient scaler). The features
            are cast to float32 before the losses; memories and losses stay float32.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        *,
        lr: float = 3.5e-4,
        weight_decay: float = 5e-4,
        step_size: int = 20,
        gamma: float = 0.1,
        schedule_per: str = "stage",
        temperature: float = 0.05,
        momentum: float = 0.1,
        weights: LossWeights | None = None,
        autocast: torch.dtype | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.lr = lr
        self.weight_decay = weight_decay
        self.step_size = step_size
        self.gamma = gamma
        if schedule_per not in ("stage", "run"):
            raise ValueError(f"schedule_per must be stage or run, got {schedule_per!r}")
        self.schedule_per = schedule_per
        self.temperature = temperature
        self.momentum = momentum
        self.weights = weights or LossWeights()
        if autocast == torch.float16 and device.type != "cuda":
            raise ValueError("float16 autocast needs a CUDA device; use bfloat16 on CPU")
        self.autocast = autocast
        self.scaler = torch.amp.GradScaler("cuda", enabled=autocast == torch.float16)
        self.stage = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.memories: Memories | None = None
        self.targets: RoundTargets | None = None

    # ---------------------------------------------------------------- lifecycle

    def start_stage(self, stage: int, first_round: int = 0) -> None:
        """A fresh optimiser and schedule at the beginning of a stage.

        `first_round` is the run's index of the stage's first round. With ``schedule_per
        == "run"`` the schedule starts there, at ``lr * gamma ** (first_round // step_size)``,
        as if it had counted every earlier round; with ``"stage"`` it starts at ``lr``.
        """
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=self.step_size, gamma=self.gamma
        )
        if self.schedule_per == "run" and first_round > 0:
            # StepLR's step() multiplies by gamma whenever its count reaches a multiple of
            # step_size, so setting the count and the rate continues the schedule exactly.
            rate = self.lr * self.gamma ** (first_round // self.step_size)
            for group in self.optimizer.param_groups:
                group["lr"] = rate
            self.scheduler.last_epoch = first_round
            self.scheduler._last_lr = [rate] * len(self.optimizer.param_groups)
        self.stage = stage

    def start_round(self, targets: RoundTargets) -> None:
        """Build the round's memory banks from the clustering / matching targets."""
        if targets.stage != self.stage:
            raise ValueError(f"targets are for stage {targets.stage}, trainer is in {self.stage}")
        self.targets = targets
        self.memories = build_memories(targets, self.temperature, self.momentum, self.device)

    def end_round(self) -> None:
        assert self.scheduler is not None
        self.scheduler.step()
        self.memories = None
        self.targets = None

    # ---------------------------------------------------------------- steps

    def _forward(self, visible: Batch, infrared: Batch) -> _Forward:
        """One mixed forward pass: normalised float32 features and labels per modality."""
        views_v, labels_v, index_v = (t.to(self.device, non_blocking=True) for t in visible)
        views_r, labels_r, index_r = (t.to(self.device, non_blocking=True) for t in infrared)
        views_per_v, views_per_r = views_v.shape[1], views_r.shape[1]
        images = torch.cat([views_v.flatten(0, 1), views_r.flatten(0, 1)])
        modality = torch.cat(
            [
                torch.zeros(views_v.shape[0] * views_per_v, dtype=torch.long),
                torch.ones(views_r.shape[0] * views_per_r, dtype=torch.long),
            ]
        ).to(self.device)
        context = (
            torch.autocast(self.device.type, dtype=self.autocast)
            if self.autocast
            else nullcontext()
        )
        with context:
            output = self.model(images, modality)
        features = F.normalize(output.neck.float(), dim=1)
        labels_v = labels_v.repeat_interleave(views_per_v)
        labels_r = labels_r.repeat_interleave(views_per_r)
        features_v, features_r = features.split([len(labels_v), len(labels_r)])
        return _Forward(
            features_v,
            features_r,
            labels_v,
            labels_r,
            index_v.repeat_interleave(views_per_v),
            index_r.repeat_interleave(views_per_r),
        )

    def training_step(self, visible: Batch, infrared: Batch) -> StepOutput:
        """The losses of one iteration of the current stage (`stage1_step` / `stage2_step`)."""
        assert self.memories is not None and self.targets is not None
        forward = self._forward(visible, infrared)
        if isinstance(self.targets, Stage1Targets):
            return self.stage1_step(forward)
        return self.stage2_step(forward)

    def stage1_step(self, forward: _Forward) -> StepOutput:
        """CMC: ``NCE(f^v; M^v) + NCE(f^r; M^r) + lambda_cmc (NCE(f^v; M^j) + NCE(f^r; M^j))``."""
        memories, targets, tau = self.memories, self.targets, self.temperature
        assert memories is not None and targets is not None
        f_v, f_r, y_v, y_r = (
            forward.features_v,
            forward.features_r,
            forward.labels_v,
            forward.labels_r,
        )
        losses = {
            "visible": cluster_nce(f_v, memories.visible.vectors, y_v, tau),
            "infrared": cluster_nce(f_r, memories.infrared.vectors, y_r, tau),
        }
        total = losses["visible"] + losses["infrared"]
        joint_v = joint_r = None
        if memories.joint is not None and self.weights.lambda_cmc > 0:
            joint_v = torch.as_tensor(targets.joint_visible, device=self.device)[forward.index_v]
            joint_r = torch.as_tensor(targets.joint_infrared, device=self.device)[forward.index_r]
            losses["cmc"] = cluster_nce(f_v, memories.joint.vectors, joint_v, tau) + cluster_nce(
                f_r, memories.joint.vectors, joint_r, tau
            )
            total = total + self.weights.lambda_cmc * losses["cmc"]
        return StepOutput(total, losses, forward, joint_v, joint_r)

    def stage2_step(self, forward: _Forward) -> StepOutput:
        """MMLM + SCA: ``L_MML^v + L_MML^r + lambda_cross L_cross + lambda_sca L_SCA``."""
        memories, targets, tau = self.memories, self.targets, self.temperature
        assert memories is not None and isinstance(targets, Stage2Targets)
        mem_v, mem_r = memories.visible, memories.infrared
        assert isinstance(mem_v, MultiMemory) and isinstance(mem_r, MultiMemory)
        f_v, f_r, y_v, y_r = (
            forward.features_v,
            forward.features_r,
            forward.labels_v,
            forward.labels_r,
        )
        losses = {
            "visible": multi_memory_loss(f_v, mem_v.vectors, mem_v.mask, y_v, tau),
            "infrared": multi_memory_loss(f_r, mem_r.vectors, mem_r.mask, y_r, tau),
        }
        total = losses["visible"] + losses["infrared"]
        if self.weights.lambda_cross > 0:
            losses["cross"] = cross_modality_loss(
                features_v=f_v,
                labels_v=y_v,
                memory_r=mem_r.vectors,
                mask_r=mem_r.mask,
                v2r=torch.as_tensor(targets.v2r, device=self.device),
                features_r=f_r,
                labels_r=y_r,
                memory_v=mem_v.vectors,
                mask_v=mem_v.mask,
                r2v=torch.as_tensor(targets.r2v, device=self.device),
                temperature=tau,
            )
            total = total + self.weights.lambda_cross * losses["cross"]
        if self.weights.lambda_sca > 0:
            losses["sca"] = sca_loss(
                features_v=f_v,
                labels_v=y_v,
                features_r=f_r,
                labels_r=y_r,
                weights_v2r=torch.as_tensor(targets.weights_v2r, device=self.device),
                weights_r2v=torch.as_tensor(targets.weights_r2v, device=self.device),
                mean_memory_v=mem_v.mean_memories(),
                mean_memory_r=mem_r.mean_memories(),
            )
            total = total + self.weights.lambda_sca * losses["sca"]
        return StepOutput(total, losses, forward)

    @torch.no_grad()
    def after_step(self, step: StepOutput) -> None:
        """The explicit memory update, after the optimiser step; identical on every rank."""
        assert self.memories is not None
        gather = distributed.all_gather_cat
        forward = step.forward
        features_v = gather(forward.features_v.detach())
        features_r = gather(forward.features_r.detach())
        labels_v, labels_r = gather(forward.labels_v), gather(forward.labels_r)
        self.memories.visible.update(features_v, labels_v)
        self.memories.infrared.update(features_r, labels_r)
        if self.memories.joint is not None and step.joint_v is not None:
            assert step.joint_r is not None
            joint_labels = torch.cat([gather(step.joint_v), gather(step.joint_r)])
            self.memories.joint.update(torch.cat([features_v, features_r]), joint_labels)

    def train_round(
        self,
        visible_batches: Iterable[Batch],
        infrared_batches: Iterable[Batch],
        iters: int,
        *,
        progress: bool = False,
        desc: str = "train",
    ) -> dict[str, float]:
        """Run `iters` iterations; returns the mean of every loss component."""
        shard = Shard(visible_batches, infrared_batches)
        return self.train_round_sharded([shard], iters, progress=progress, desc=desc)

    def train_round_sharded(
        self,
        shards: Sequence[Shard],
        iters: int,
        *,
        progress: bool = False,
        desc: str = "train",
    ) -> dict[str, float]:
        """`iters` optimiser steps, each over one batch of every shard (gradient accumulation).

        Each shard's batch goes through the network alone (its own batch-norm statistics) and
        its loss is divided by the number of shards, so the gradient is the mean of the
        shards' gradients; the memories are then updated with every shard's features in
        shard order. That is what ``len(shards)`` DDP processes do, one shard each.
        Returns the mean over steps (and shards) of every loss component.
        """
        assert self.optimizer is not None
        self.model.train()
        sums: dict[str, float] = {}
        steps = 0
        iterators = [shard.pairs() for shard in shards]
        bar = tqdm(total=iters, desc=desc, disable=not progress, leave=False)
        no_sync = getattr(self.model, "no_sync", nullcontext)  # DDP: reduce on the last only
        while steps < iters:
            self.optimizer.zero_grad(set_to_none=True)
            outputs = []
            for i, pairs in enumerate(iterators):
                batch = next(pairs, None)
                if batch is None:
                    break
                with no_sync() if i < len(iterators) - 1 else nullcontext():
                    step = self.training_step(*batch)
                    self.scaler.scale(step.loss / len(iterators)).backward()
                outputs.append(step)
            if len(outputs) < len(iterators):
                break
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.after_step(outputs[0] if len(outputs) == 1 else _merge(outputs))
            for step in outputs:
                for key, value in {"loss": step.loss, **step.losses}.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach()) / len(outputs)
            steps += 1
            bar.update(1)
            if progress:
                bar.set_postfix(loss=f"{float(outputs[0].loss):.3f}")
        bar.close()
        if steps == 0:
            raise RuntimeError("no training batch was produced")
        return {f"loss_{k}" if k != "loss" else "loss": v / steps for k, v in sums.items()}


@dataclass
class Shard:
    """One accumulation shard's batches: visible and infrared, drawn in pairs.

    ``rng_state`` (a CPU generator state, `torch.random.get_rng_state`) gives the shard an
    augmentation stream of its own: it is swapped into the global generator while the shard's
    batches are drawn, as a separate process would have it (DataLoader workers seed
    themselves from the loader's generator and need none). None: the global generator as is.
    """

    visible: Iterable[Batch]
    infrared: Iterable[Batch]
    rng_state: torch.Tensor | None = None

    def pairs(self) -> Iterator[tuple[Batch, Batch]]:
        visible, infrared = iter(self.visible), iter(self.infrared)
        while True:
            saved = None
            if self.rng_state is not None:
                saved = torch.random.get_rng_state()
                torch.random.set_rng_state(self.rng_state)
            try:
                pair = (next(visible), next(infrared))
            except StopIteration:
                return
            finally:
                if saved is not None:
                    self.rng_state = torch.random.get_rng_state()
                    torch.random.set_rng_state(saved)
            yield pair


def _merge(outputs: Sequence[StepOutput]) -> StepOutput:
    """The shards' outputs as one (features, labels and joint labels concatenated in order)."""

    def cat(values: list[torch.Tensor | None]) -> torch.Tensor | None:
        return None if any(v is None for v in values) else torch.cat(values)  # type: ignore[arg-type]

    fields = _Forward.__dataclass_fields__
    forward = _Forward(*(torch.cat([getattr(o.forward, f) for o in outputs]) for f in fields))
    total = torch.stack([o.loss.detach() for o in outputs]).mean()
    return StepOutput(
        total,
        {},
        forward,
        cat([o.joint_v for o in outputs]),
        cat([o.joint_r for o in outputs]),
    )


def build_memories(
    targets: RoundTargets, temperature: float, momentum: float, device: torch.device
) -> Memories:
    """Memory banks initialised from the round's targets, on `device`."""

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=device)

    dim = targets.feature_dim
    if isinstance(targets, Stage1Targets):
        visible = ClusterMemory(dim, temperature, momentum).to(device)
        visible.reset(tensor(targets.centres_visible))
        infrared = ClusterMemory(dim, temperature, momentum).to(device)
        infrared.reset(tensor(targets.centres_infrared))
        joint = None
        if targets.centres_joint is not None and len(targets.centres_joint):
            joint = ClusterMemory(dim, temperature, momentum).to(device)
            joint.reset(tensor(targets.centres_joint))
        return Memories(visible, infrared, joint)
    visible = MultiMemory(dim, temperature, momentum).to(device)
    visible.reset(tensor(targets.centres_visible), tensor(targets.mask_visible))
    infrared = MultiMemory(dim, temperature, momentum).to(device)
    infrared.reset(tensor(targets.centres_infrared), tensor(targets.mask_infrared))
    return Memories(visible, infrared)
