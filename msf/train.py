"""The training loop: AdamW, warm-up + cosine, clipping, AMP, progressive resolution, DDP."""

from __future__ import annotations

import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from msf import __version__
from msf.checkpoint import atomic_save, describe_mismatch, extract_state_dict, read_checkpoint, standard_metadata
from msf.config import TrainConfig, size_label
from msf.data import FaceDataset, data_fingerprint, list_samples, read_pair, resize_batch, split_samples
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
    if amp == "auto":
        return "fp16" if device.type == "cuda" else "bf16"
    if amp not in ("off", "bf16", "fp16"):
        raise MsfError(f"unknown amp mode {amp!r} (auto, bf16, fp16, off)")
    return amp


def lr_at(epoch: float, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_epochs``, then cosine to ``min_lr`` (DESIGN §3.4)."""
    total, warm = cfg.total_epochs, cfg.warmup_epochs
    if warm > 0 and epoch <= warm:
        return cfg.lr * epoch / warm
    frac = min(1.0, (epoch - warm) / max(total - warm, 1e-9))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


def phase_of(epoch: int, cfg: TrainConfig):
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
    epoch: int = 0  # epochs completed
    step: int = 0
    best_f_score: float = -1.0
    best_phase: int = -1
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


def train(cfg: TrainConfig, resume: str | Path | None = None, log=print,
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
        return _train(cfg, resume, init, log, device, amp, ddp)
    finally:
        ddp.close()


def _train(cfg, resume, init, log, device, amp, ddp) -> dict[str, Any]:
    root = cfg.data or data_root()
    if root is None:
        raise MsfError("no data: pass --data DIR or set MSF_DATA")
    samples = list_samples(root)
    fingerprint = data_fingerprint(samples)
    out = Path(cfg.out)
    state = TrainState()
    model = MicroSegFormer(config=cfg.model)
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
        elif ddp.main:
            log(f"warning: {init} records no validation split; using the seeded split (seed {cfg.seed}), "
                "which may overlap the faces it was trained on")
    seed_everything(cfg.seed + state.epoch * 1000 + ddp.rank)
    if cfg.train_limit:
        train_names = train_names[:cfg.train_limit]
    by_name = {s.name: s for s in samples}
    train_samples = [by_name[n] for n in train_names]
    val_samples = [by_name[n] for n in val_names]

    model.to(device)
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    if ckpt is not None and "optimizer_state_dict" in ckpt:
        opt.load_state_dict(ckpt["optimizer_state_dict"])
    scaler = torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))
    net = model
    if ddp.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    if ddp.main:
        log(f"MicroSegFormer {count_parameters(model):,} params | {len(train_samples)} train / "
            f"{len(val_samples)} val images | device {device} ({ddp.world} process(es)) | amp {amp}")
    pairs = {s.name: read_pair(s) for s in train_samples + val_samples}
    val_pairs = [pairs[s.name] for s in val_samples]
    aug = cfg.aug
    datasets: dict[int, FaceDataset] = {}

    stop = {"flag": False, "why": ""}
    deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes else None

    def _sigint(signum, frame):
        stop["flag"], stop["why"] = True, "interrupted"

    old_handler = signal.signal(signal.SIGINT, _sigint) if ddp.main else None
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    summary: dict[str, Any] = {}
    try:
        while state.epoch < cfg.total_epochs and not stop["flag"]:
            phase_idx, phase = phase_of(state.epoch, cfg)
            key = (phase.size, phase.crop)
            if key not in datasets:
                datasets = {key: FaceDataset(train_samples, phase.size, aug,
                                             [pairs[s.name] for s in train_samples], crop=phase.crop)}
            ds = datasets[key]
            sampler = (torch.utils.data.distributed.DistributedSampler(ds, seed=cfg.seed)
                       if ddp.enabled else None)
            if sampler is not None:
                sampler.set_epoch(state.epoch)
            per_rank_batch = max(1, phase.batch // ddp.world)
            loader = torch.utils.data.DataLoader(
                ds, batch_size=per_rank_batch, shuffle=sampler is None, sampler=sampler,
                num_workers=cfg.workers, drop_last=len(ds) > per_rank_batch,
                persistent_workers=False)
            net.train()
            t_ep = time.monotonic()
            losses, n_img = [], 0
            sizes = phase.train_sizes()
            bar = tqdm(loader, desc=f"epoch {state.epoch + 1}/{cfg.total_epochs} @{phase.label()}",
                       disable=not ddp.main or None, leave=False, unit="batch", dynamic_ncols=True)
            for i, (x, y) in enumerate(bar):
                ep_float = state.epoch + i / max(len(loader), 1)
                for g in opt.param_groups:
                    g["lr"] = lr_at(ep_float, cfg)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if len(sizes) > 1:
                    x, y = resize_batch(x, y, _batch_size_at(sizes, cfg.seed, state.step))
                with autocast(device, amp):
                    logits = net(x)
                loss = seg_loss(logits, y, cfg.dice_weight)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
                scaler.step(opt)
                scaler.update()
                state.step += 1
                losses.append(loss.item())
                n_img += x.shape[0]
                bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
                if (cfg.max_steps and state.step >= cfg.max_steps) or stop["flag"] or (
                        deadline and time.monotonic() > deadline):
                    stop["flag"] = True
                    stop["why"] = stop["why"] or "step/time limit"
                    break
            bar.close()
            epoch_done = not stop["flag"] or i == len(loader) - 1
            train_s = time.monotonic() - t_ep
            if epoch_done:
                state.epoch += 1
            record: dict[str, Any] = {
                "epoch": state.epoch, "size": phase.size, "crop": phase.crop, "scales": phase.scales,
                "loss": float(np.mean(losses)) if losses else None,
                "lr": opt.param_groups[0]["lr"], "train_s": round(train_s, 1),
                "s_per_image": round(train_s / max(n_img * ddp.world, 1), 4),
            }
            if ddp.main:
                is_best = False
                if epoch_done and (state.epoch % cfg.val_every == 0 or state.epoch == cfg.total_epochs
                                   or stop["flag"]) and val_pairs:
                    t_val = time.monotonic()
                    res = evaluate_pairs(model, val_pairs, phase.size, device, amp="off")
                    record.update(val_f_score=round(res["f_score"], 4),
                                  val_f1_literature=round(res["f1_literature"], 4),
                                  val_miou=round(res["miou"], 4), val_s=round(time.monotonic() - t_val, 1))
                    # Scores at different input sizes are not comparable: the best checkpoint
                    # is the best at the latest validation size (the final resolution).
                    if state.best_phase < 0 or cfg.phases[state.best_phase].size != phase.size:
                        state.best_f_score, state.stale_epochs = -1.0, 0
                    state.best_phase = phase_idx
                    if res["f_score"] > state.best_f_score:
                        state.best_f_score, state.stale_epochs, is_best = res["f_score"], 0, True
                    else:
                        state.stale_epochs += cfg.val_every
                state.history.append(record)
                log(_epoch_line(record, cfg.total_epochs, is_best))
                payload = _checkpoint(model, opt, state, cfg, val_names, fingerprint, amp)
                atomic_save(payload, out / "last.pt")
                if is_best:
                    atomic_save(payload, out / "best.pt")
                if state.stale_epochs >= cfg.patience and phase_idx == len(cfg.phases) - 1:
                    stop["flag"], stop["why"] = True, f"early stop: {cfg.patience} epochs without improvement"
            if ddp.enabled:
                flag = torch.tensor([1.0 if stop["flag"] else 0.0])
                dist.broadcast(flag, 0)
                stop["flag"] = bool(flag.item())
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    summary = {"epochs": state.epoch, "steps": state.step, "best_f_score": state.best_f_score,
               "best": str(out / "best.pt"), "last": str(out / "last.pt"),
               "minutes": round((time.monotonic() - t_start) / 60, 2), "stopped": stop["why"] or "done",
               "history": state.history}
    if ddp.main and stop["why"]:
        log(f"stopped: {stop['why']} (resume with --resume {out / 'last.pt'})")
    return summary


def _batch_size_at(sizes: list[int], seed: int, step: int) -> int:
    """The input size of training step ``step`` in a multi-scale phase: drawn uniformly, seeded
    by (seed, step) so a resumed run and every DDP rank draw the same sizes."""
    return sizes[int(np.random.default_rng([seed, step]).integers(len(sizes)))]


def _epoch_line(r: dict[str, Any], total: int, is_best: bool) -> str:
    size = f"size {size_label(r['size'], r.get('crop'), r.get('scales'))}"
    parts = [f"epoch {r['epoch']:>3}/{total}", size, f"loss {r['loss']:.4f}" if r["loss"] else "loss -",
             f"lr {r['lr']:.2e}", f"{r['s_per_image'] * 1000:.0f} ms/img", f"{r['train_s']:.0f}s"]
    if "val_f_score" in r:
        parts += [f"val F {r['val_f_score']:.4f}", f"F1lit {r['val_f1_literature']:.4f}",
                  f"mIoU {r['val_miou']:.4f}"]
    return " | ".join(parts) + ("  *best*" if is_best else "")


def _checkpoint(model, opt, state: TrainState, cfg: TrainConfig, val_names, fingerprint, amp) -> dict:
    from dataclasses import asdict

    return {
        "epoch": state.epoch,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": opt.state_dict(),
        "best_f_score": state.best_f_score,
        "config": cfg.to_dict(),
        "train_state": asdict(state),
        "val_names": list(val_names),
        "data_sha256": fingerprint,
        "amp": amp,
        "msf_version": __version__,
        "torch_version": str(torch.__version__),
        **standard_metadata(),
    }
