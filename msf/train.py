"""Training: AdamW, warm-up + cosine, clipping, AMP, progressive resolution, DDP.

In parts, the shape of a timm train script: ``setup`` (split, model, optimiser), ``fit`` (the
epoch loop), ``train_one_epoch``, ``validate``, and ``CheckpointKeeper`` (last/best checkpoints,
early stopping; its state is saved with every checkpoint so ``--resume`` continues it).
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from msf import __version__
from msf.checkpoint import atomic_save, describe_mismatch, extract_state_dict, read_checkpoint, standard_metadata
from msf.config import Phase, TrainConfig, size_label
from msf.data import (
    FaceDataset,
    Sample,
    data_fingerprint,
    list_samples,
    read_pair,
    resize_batch,
    split_samples,
)
from msf.degrade import degrade_pairs, select_degradations
from msf.errors import MsfError
from msf.evaluate import autocast, evaluate_pairs
from msf.losses import seg_loss
from msf.model import MicroSegFormer, count_parameters
from msf.paths import data_root


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA (this process's local rank) when available, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise MsfError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MsfError("CUDA device requested but torch sees no GPU")
    return dev


def resolve_amp(amp: str, device: torch.device) -> str:
    """``auto`` = fp16 on CUDA, bf16 on CPU."""
    if amp == "auto":
        return "fp16" if device.type == "cuda" else "bf16"
    if amp not in ("off", "bf16", "fp16"):
        raise MsfError(f"unknown amp mode {amp!r} (auto, bf16, fp16, off)")
    return amp


def lr_at(epoch: float, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_epochs``, then cosine to ``min_lr``."""
    total, warm = cfg.total_epochs, cfg.warmup_epochs
    if warm > 0 and epoch <= warm:
        return cfg.lr * epoch / warm
    frac = min(1.0, (epoch - warm) / max(total - warm, 1e-9))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


def phase_of(epoch: int, cfg: TrainConfig) -> tuple[int, Phase]:
    """The phase that epoch (0-based) belongs to, and its index."""
    start = 0
    for i, p in enumerate(cfg.phases):
        if epoch < start + p.epochs:
            return i, p
        start += p.epochs
    return len(cfg.phases) - 1, cfg.phases[-1]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainState:
    """Progress of a run, saved in every checkpoint as ``train_state`` (what ``--resume`` restores)."""

    epoch: int = 0  # epochs completed
    step: int = 0
    best_f_score: float = -1.0  # CheckpointKeeper's state: the best score, the phase it was
    best_phase: int = -1        # measured in, and the epochs since it last improved
    stale_epochs: int = 0
    init_from: str | None = None  # the checkpoint a fine-tuning run started from
    history: list[dict[str, Any]] = field(default_factory=list)


class _Dist:
    """Process-group facts; a single process when not launched by torchrun."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.enabled = self.world > 1
        if self.enabled and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


class StopFlag:
    """Why the run should stop (Ctrl-C, a step/time limit, early stop); the first reason is kept."""

    def __init__(self) -> None:
        self.requested = False
        self.why = ""

    def request(self, why: str) -> None:
        self.requested = True
        self.why = self.why or why


class CheckpointKeeper:
    """Writes ``last.pt`` every epoch and ``best.pt`` on a better validation F-score, and decides
    early stopping. Its state (best score, the phase it was measured in, stale epochs) lives in
    ``TrainState``, which every checkpoint records, so a resumed run continues it."""

    def __init__(self, out: Path, cfg: TrainConfig, state: TrainState) -> None:
        self.out, self.state = out, state
        self.sizes = [p.size for p in cfg.phases]
        self.patience, self.val_every = cfg.patience, cfg.val_every

    @property
    def last(self) -> Path:
        return self.out / "last.pt"

    @property
    def best(self) -> Path:
        return self.out / "best.pt"

    def update(self, f_score: float, phase_idx: int) -> bool:
        """Record a validation score; True when it is the new best."""
        st = self.state
        # Scores at different input sizes are not comparable: the best checkpoint is the best
        # at the latest validation size (the final resolution).
        if st.best_phase < 0 or self.sizes[st.best_phase] != self.sizes[phase_idx]:
            st.best_f_score, st.stale_epochs = -1.0, 0
        st.best_phase = phase_idx
        if f_score > st.best_f_score:
            st.best_f_score, st.stale_epochs = f_score, 0
            return True
        st.stale_epochs += self.val_every
        return False

    def save(self, payload: dict[str, Any], is_best: bool) -> None:
        atomic_save(payload, self.last)
        if is_best:
            atomic_save(payload, self.best)

    def early_stop(self, phase_idx: int) -> str | None:
        """The reason to stop, once ``patience`` epochs passed without improvement in the last phase."""
        if self.state.stale_epochs >= self.patience and phase_idx == len(self.sizes) - 1:
            return f"early stop: {self.patience} epochs without improvement"
        return None


@dataclass
class TrainRun:
    """Everything ``setup`` builds: the model (and its DDP wrapper), optimiser, split and data."""

    cfg: TrainConfig
    device: torch.device
    amp: str
    ddp: _Dist
    model: MicroSegFormer
    net: torch.nn.Module  # what the training step calls: the model, or its DDP wrapper
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    state: TrainState
    train_samples: list[Sample]
    val_names: list[str]
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]
    val_pairs: list[tuple[np.ndarray, np.ndarray]]
    fingerprint: str
    val_degraded: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)


@dataclass
class EpochResult:
    """One pass over the training loader (possibly cut short by a stop request)."""

    mean_loss: float | None
    images: int
    seconds: float
    completed: bool  # reached the loader's end (an interrupted epoch does not count)


@dataclass
class Validation:
    """Scores on the held-out faces (unrounded: the best checkpoint is chosen on these)."""

    f_score: float
    f1_literature: float
    miou: float
    seconds: float

    def record(self) -> dict[str, float]:
        """The epoch-record fields (rounded as logged)."""
        return {"val_f_score": round(self.f_score, 4), "val_f1_literature": round(self.f1_literature, 4),
                "val_miou": round(self.miou, 4), "val_s": round(self.seconds, 1)}


def train(cfg: TrainConfig, resume: str | Path | None = None, log: Callable[[str], None] = print,
          init: str | Path | None = None) -> dict[str, Any]:
    """Run training; returns a summary (best F-score, checkpoint paths, timings).

    ``resume`` continues an interrupted run (weights, optimiser, schedule, split); ``init``
    starts a new run (fresh optimiser and schedule) from a checkpoint's weights — fine-tuning —
    keeping the validation split that checkpoint records, so its held-out faces stay held out.
    """
    if resume and init:
        raise MsfError("pass either --resume (continue a run) or --init (fine-tune from weights), not both")
    device = resolve_device(cfg.device)
    amp = resolve_amp(cfg.amp, device)
    ddp = _Dist(device)
    try:
        run = setup(cfg, resume, init, log, device, amp, ddp)
        return fit(run, log)
    finally:
        ddp.close()


def setup(cfg: TrainConfig, resume: str | Path | None, init: str | Path | None, log: Callable[[str], None],
          device: torch.device, amp: str, ddp: _Dist) -> TrainRun:
    """Data split, model (fresh, resumed or initialised from weights), optimiser and seeds."""
    root = cfg.data or data_root()
    if root is None:
        raise MsfError("no data: pass --data DIR or set MSF_DATA")
    samples = list_samples(root)
    fingerprint = data_fingerprint(samples)
    model = MicroSegFormer(config=cfg.model)
    state, ckpt, train_names, val_names = _restore(cfg, model, samples, resume, init, log, ddp.main)
    seed_everything(cfg.seed + state.epoch * 1000 + ddp.rank)
    if cfg.train_limit:
        train_names = train_names[:cfg.train_limit]
    by_name = {s.name: s for s in samples}
    train_samples = [by_name[n] for n in train_names]
    val_samples = [by_name[n] for n in val_names]

    model.to(device)
    opt = build_optimizer(model, cfg)
    if ckpt is not None and "optimizer_state_dict" in ckpt:
        opt.load_state_dict(ckpt["optimizer_state_dict"])
    scaler = torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))
    net: torch.nn.Module = model
    if ddp.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    if ddp.main:
        log(f"MicroSegFormer {count_parameters(model):,} params | {len(train_samples)} train / "
            f"{len(val_samples)} val images | device {device} ({ddp.world} process(es)) | amp {amp}")
    pairs = {s.name: read_pair(s) for s in train_samples + val_samples}
    val_pairs = [pairs[s.name] for s in val_samples]
    # Degraded copies of the held-out faces, scored each epoch beside the clean ones (logged only:
    # the best checkpoint is still chosen on clean faces).
    val_degraded = {}
    if cfg.val_degrade and val_pairs:
        val_degraded = {d.name: degrade_pairs(val_pairs, d, cfg.seed)
                        for d in select_degradations(",".join(cfg.val_degrade))}
    return TrainRun(cfg, device, amp, ddp, model, net, opt, scaler, state, train_samples, list(val_names), pairs,
                    val_pairs, fingerprint, val_degraded)


def _restore(cfg: TrainConfig, model: MicroSegFormer, samples: list[Sample], resume: str | Path | None,
             init: str | Path | None, log: Callable[[str], None], main: bool,
             ) -> tuple[TrainState, dict[str, Any] | None, list[str], list[str]]:
    """Training state, the resumed checkpoint (if any) and the train/validation split: seeded for
    a new run, the checkpoint's own for ``resume`` and ``init``. Loads weights into ``model``."""
    state = TrainState()
    ckpt = None
    if resume:
        ckpt = read_checkpoint(resume)
        if "train_state" not in ckpt:
            raise MsfError(f"{resume} has no training state to resume from (not an msf-train checkpoint)")
        model.load_state_dict(ckpt["model_state_dict"])
        state = TrainState(**ckpt["train_state"])
        val_names = list(ckpt["val_names"])
        train_names = sorted(set(s.name for s in samples) - set(val_names))
    else:
        train_names, val_names = split_samples(samples, cfg.val_count, cfg.seed)
    if init:
        init_ckpt = read_checkpoint(init)
        state_dict = extract_state_dict(init_ckpt, source=str(init))
        problem = describe_mismatch(model, state_dict)
        if problem:
            raise MsfError(f"--init {init} does not fit the configured model: {problem}")
        model.load_state_dict({k: v.float() for k, v in state_dict.items()})
        state.init_from = str(init)
        recorded = list(init_ckpt.get("val_names") or [])
        if recorded:
            known = {s.name for s in samples}
            missing = [n for n in recorded if n not in known]
            if missing:
                raise MsfError(f"--init {init} held out {len(missing)} faces this data root lacks "
                               f"(e.g. {missing[0]}): fine-tune on the data it was trained on")
            val_names = recorded
            train_names = sorted(known - set(val_names))
        elif main:
            log(f"warning: {init} records no validation split; using the seeded split (seed {cfg.seed}), "
                "which may overlap the faces it was trained on")
    return state, ckpt, train_names, val_names


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and kernels only (not on biases and norm weights)."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


def fit(run: TrainRun, log: Callable[[str], None]) -> dict[str, Any]:
    """The epoch loop: train, validate when due, keep checkpoints, stop on request or early stop."""
    cfg, state, ddp = run.cfg, run.state, run.ddp
    out = Path(cfg.out)
    keeper = CheckpointKeeper(out, cfg, state)
    datasets: dict[tuple[int, int | None], FaceDataset] = {}
    stop = StopFlag()
    deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes else None
    old_handler = signal.signal(signal.SIGINT, lambda signum, frame: stop.request("interrupted")) if ddp.main else None
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    try:
        while state.epoch < cfg.total_epochs and not stop.requested:
            phase_idx, phase = phase_of(state.epoch, cfg)
            key = (phase.size, phase.crop)
            if key not in datasets:  # only the current phase's resized images stay in memory
                datasets = {key: FaceDataset(run.train_samples, phase.size, cfg.aug,
                                             [run.pairs[s.name] for s in run.train_samples], crop=phase.crop,
                                             degrade=cfg.degrade if cfg.degrade.p > 0 else None)}
            loader = _loader(datasets[key], phase, cfg, ddp, state.epoch)
            ep = train_one_epoch(run, loader, phase, stop, deadline)
            if ep.completed:
                state.epoch += 1
            record: dict[str, Any] = {
                "epoch": state.epoch, "size": phase.size, "crop": phase.crop, "scales": phase.scales,
                "loss": ep.mean_loss, "lr": run.opt.param_groups[0]["lr"], "train_s": round(ep.seconds, 1),
                "s_per_image": round(ep.seconds / max(ep.images * ddp.world, 1), 4),
            }
            if ddp.main:
                is_best = False
                due = state.epoch % cfg.val_every == 0 or state.epoch == cfg.total_epochs or stop.requested
                if ep.completed and due and run.val_pairs:
                    val_size = cfg.val_size or phase.size
                    val = validate(run.model, run.val_pairs, val_size, run.device)
                    record.update(val.record(), val_size=val_size)
                    for name, pairs in run.val_degraded.items():
                        record[f"val_f_{name}"] = round(validate(run.model, pairs, val_size, run.device).f_score, 4)
                    is_best = keeper.update(val.f_score, phase_idx)
                state.history.append(record)
                log(_epoch_line(record, cfg.total_epochs, is_best))
                keeper.save(checkpoint_payload(run), is_best)
                why = keeper.early_stop(phase_idx)
                if why:
                    stop.request(why)
            if ddp.enabled:
                flag = torch.tensor([1.0 if stop.requested else 0.0])
                dist.broadcast(flag, 0)
                stop.requested = bool(flag.item())
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    summary = {"epochs": state.epoch, "steps": state.step, "best_f_score": state.best_f_score,
               "best": str(keeper.best), "last": str(keeper.last),
               "minutes": round((time.monotonic() - t_start) / 60, 2), "stopped": stop.why or "done",
               "history": state.history}
    if ddp.main and stop.why:
        log(f"stopped: {stop.why} (resume with --resume {keeper.last})")
    return summary


def _loader(ds: FaceDataset, phase: Phase, cfg: TrainConfig, ddp: _Dist, epoch: int) -> torch.utils.data.DataLoader:
    sampler = torch.utils.data.distributed.DistributedSampler(ds, seed=cfg.seed) if ddp.enabled else None
    if sampler is not None:
        sampler.set_epoch(epoch)
    per_rank_batch = max(1, phase.batch // ddp.world)
    return torch.utils.data.DataLoader(
        ds, batch_size=per_rank_batch, shuffle=sampler is None, sampler=sampler,
        num_workers=cfg.workers, drop_last=len(ds) > per_rank_batch, persistent_workers=False)


def train_one_epoch(run: TrainRun, loader: torch.utils.data.DataLoader, phase: Phase, stop: StopFlag,
                    deadline: float | None) -> EpochResult:
    """One epoch of optimiser steps (lr per step, multi-scale resize, AMP, clipping); stops early
    when ``stop`` is requested or the step/time limit is reached (then requesting the stop)."""
    cfg, state, opt, device = run.cfg, run.state, run.opt, run.device
    run.net.train()
    t0 = time.monotonic()
    losses: list[float] = []
    n_img = 0
    last = -1
    sizes = phase.train_sizes()
    bar = tqdm(loader, desc=f"epoch {state.epoch + 1}/{cfg.total_epochs} @{phase.label()}",
               disable=not run.ddp.main or None, leave=False, unit="batch", dynamic_ncols=True)
    for i, (x, y) in enumerate(bar):
        last = i
        ep_float = state.epoch + i / max(len(loader), 1)
        for g in opt.param_groups:
            g["lr"] = lr_at(ep_float, cfg)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if len(sizes) > 1:
            x, y = resize_batch(x, y, _input_size_at(sizes, cfg.seed, state.step))
        with autocast(device, run.amp):
            logits = run.net(x)
        loss = seg_loss(logits, y, cfg.dice_weight)
        opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.clip_norm)
        run.scaler.step(opt)
        run.scaler.update()
        state.step += 1
        losses.append(loss.item())
        n_img += x.shape[0]
        bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
        if ((cfg.max_steps and state.step >= cfg.max_steps) or stop.requested
                or (deadline and time.monotonic() > deadline)):
            stop.request("step/time limit")
            break
    bar.close()
    completed = not stop.requested or last == len(loader) - 1
    return EpochResult(float(np.mean(losses)) if losses else None, n_img, time.monotonic() - t0, completed)


def validate(model: torch.nn.Module, val_pairs: list[tuple[np.ndarray, np.ndarray]], size: int,
             device: torch.device) -> Validation:
    """Scores on the held-out faces at ``size``², in fp32 (comparable across AMP settings)."""
    t0 = time.monotonic()
    res = evaluate_pairs(model, val_pairs, size, device, amp="off")
    return Validation(res["f_score"], res["f1_literature"], res["miou"], time.monotonic() - t0)


def _input_size_at(sizes: list[int], seed: int, step: int) -> int:
    """The input size of training step ``step`` in a multi-scale phase: drawn uniformly, seeded
    by (seed, step) so a resumed run and every DDP rank draw the same sizes."""
    return sizes[int(np.random.default_rng([seed, step]).integers(len(sizes)))]


def _epoch_line(r: dict[str, Any], total: int, is_best: bool) -> str:
    size = f"size {size_label(r['size'], r.get('crop'), r.get('scales'))}"
    parts = [f"epoch {r['epoch']:>3}/{total}", size, f"loss {r['loss']:.4f}" if r["loss"] else "loss -",
             f"lr {r['lr']:.2e}", f"{r['s_per_image'] * 1000:.0f} ms/img", f"{r['train_s']:.0f}s"]
    if "val_f_score" in r:
        at = f" @{r['val_size']}" if r.get("val_size", r["size"]) != r["size"] else ""
        parts += [f"val F{at} {r['val_f_score']:.4f}", f"F1lit {r['val_f1_literature']:.4f}",
                  f"mIoU {r['val_miou']:.4f}"]
        parts += [f"{k[6:]} {v:.4f}" for k, v in r.items() if k.startswith("val_f_") and k != "val_f_score"]
    return " | ".join(parts) + ("  *best*" if is_best else "")


def checkpoint_payload(run: TrainRun) -> dict[str, Any]:
    """What last.pt / best.pt hold: weights, optimiser, training state, split and metadata."""
    state = run.state
    return {
        "epoch": state.epoch,
        "model_state_dict": run.model.state_dict(),
        "optimizer_state_dict": run.opt.state_dict(),
        "best_f_score": state.best_f_score,
        "config": run.cfg.to_dict(),
        "train_state": asdict(state),
        "val_names": list(run.val_names),
        "data_sha256": run.fingerprint,
        "amp": run.amp,
        # the size the checkpoint is validated (and meant to run) at: msf-video, msf-export and
        # Segmenter default to it
        "input_size": run.cfg.val_size or run.cfg.phases[-1].size,
        "msf_version": __version__,
        "torch_version": str(torch.__version__),
        **standard_metadata(),
    }
