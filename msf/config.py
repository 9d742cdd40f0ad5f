"""Training configuration: the seed recipe as defaults, a CPU preset, YAML/JSON files, overrides."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from msf.augment import Augment
from msf.contract import DEFAULT_SIZE
from msf.degrade import Degrade
from msf.errors import MsfError
from msf.model import ModelConfig


@dataclass
class Phase:
    """A run of epochs at one square input size and batch size (progressive resolution).

    With ``crop`` the images are resized to ``size`` and training sees random ``crop``² windows
    of them: the objects keep the pixel scale of ``size`` (what the model is evaluated at) for
    about (crop/size)² of the compute. With ``scales`` (multi-scale training) each batch is
    resized to a size drawn uniformly from ``[size, *scales]`` (repeat a size to draw it more
    often), so one model learns several input sizes. Validation always runs on whole ``size``² images.
    """

    epochs: int
    size: int = DEFAULT_SIZE
    batch: int = 32
    crop: int | None = None
    scales: list[int] | None = None

    def train_sizes(self) -> list[int]:
        """The input sizes a training batch of this phase may have."""
        return [self.size, *(self.scales or ())]

    def label(self) -> str:
        """The phase's size in ``--phases`` notation: 512, 512/384 or 512+256+384."""
        return size_label(self.size, self.crop, self.scales)


def size_label(size: int, crop: int | None = None, scales: list[int] | None = None) -> str:
    """A phase's size in ``--phases`` notation: 512, 512/384 or 512+256+384."""
    return f"{size}" + (f"/{crop}" if crop else "") + "".join(f"+{s}" for s in scales or ())


# The augmentation's own dataclass is its configuration.
AugConfig = Augment


@dataclass
class TrainConfig:
    """The seed recipe, sized for a GPU: 150 epochs at 512², batch 32."""

    data: str | None = None
    out: str = "runs/msf"
    phases: list[Phase] = field(default_factory=lambda: [Phase(150, 512, 32)])
    lr: float = 1.5e-3
    min_lr: float = 0.0
    weight_decay: float = 5e-4
    warmup_epochs: float = 5.0
    clip_norm: float = 1.0
    patience: int = 30
    dice_weight: float = 0.5
    amp: str = "auto"  # auto | bf16 | fp16 | off
    val_count: int = 100
    val_every: int = 1
    seed: int = 42
    workers: int = 0
    device: str = "auto"
    max_minutes: float | None = None
    max_steps: int | None = None
    train_limit: int | None = None
    aug: AugConfig = field(default_factory=AugConfig)
    degrade: Degrade = field(default_factory=Degrade)  # off (p = 0) in the published recipe
    val_size: int | None = None  # validation input size; None = the phase's size
    val_degrade: list[str] = field(default_factory=list)  # degradations also scored each epoch
    model: ModelConfig = field(default_factory=ModelConfig)

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for group in ("aug", "degrade"):  # tuples as lists, so YAML and JSON read them back
            d[group] = {k: list(v) if isinstance(v, tuple) else v for k, v in d[group].items()}
        return d


PRESETS: dict[str, dict[str, Any]] = {
    "gpu": {},
    # Measured on the 2-core machines (README "Training"): most epochs at 256², a short
    # 384² bridge, the last ones at 512² — about two hours with the cheap forward pass.
    "cpu": {
        "phases": [
            {"epochs": 40, "size": 256, "batch": 16},
            {"epochs": 8, "size": 384, "batch": 12},
            {"epochs": 12, "size": 512, "batch": 8},
        ],
        "warmup_epochs": 1.0,
        "min_lr": 1e-5,
        "patience": 10,
        "amp": "bf16",
    },
    # Fine-tuning for real footage (from trained weights, with --init): every batch at 384²
    # (half), 256² or 512², 80 % of the images degraded (small, blurred, noisy, dark, JPEG or
    # H.264 compressed) and shifted a little like a face detector's crop; validation at 384².
    "robust": {
        "phases": [{"epochs": 14, "size": 512, "batch": 12, "scales": [384, 384, 256]}],
        "lr": 2e-4,
        "warmup_epochs": 0.5,
        "min_lr": 1e-6,
        "patience": 100,
        "amp": "bf16",
        "val_size": 384,
        "aug": {"shift": 0.04, "scale": [0.88, 1.12]},
        "degrade": {"p": 0.8},
        "val_degrade": ["s96_q40", "s64_q40"],
    },
    # Seconds, for tests and smoke runs.
    "tiny": {
        "phases": [{"epochs": 1, "size": 64, "batch": 4}],
        "warmup_epochs": 0.0,
        "val_count": 4,
        "train_limit": 16,
        "amp": "off",
    },
}


def _coerce(cls, key: str, annotation: str, value: Any) -> Any:
    """Numbers given as text become numbers (YAML 1.1 reads ``1e-6`` as a string); others fail clearly."""
    kinds = [k for k in ("int", "float") if k in annotation.split(" | ")]
    if not kinds or not isinstance(value, str):
        return value
    try:
        return int(value) if kinds == ["int"] else float(value)
    except ValueError:
        raise MsfError(f"{cls.__name__}.{key} must be a number, got {value!r}") from None


def _build(cls, data: dict[str, Any]):
    types = {f.name: str(f.type) for f in fields(cls)}
    unknown = set(data) - set(types)
    if unknown:
        raise MsfError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}")
    return cls(**{k: _coerce(cls, k, types[k], v) for k, v in data.items()})


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a (possibly partial) nested dict, validating key names."""
    d = dict(d)
    if "phases" in d:
        phases = []
        for p in d["phases"]:
            phases.append(p if isinstance(p, Phase) else _build(Phase, p))
        d["phases"] = phases
    for group, cls in (("aug", AugConfig), ("degrade", Degrade)):
        if isinstance(d.get(group), dict):
            d[group] = _build(cls, {k: tuple(v) if isinstance(v, list) else v for k, v in d[group].items()})
    if isinstance(d.get("model"), dict):
        d["model"] = _build(ModelConfig, d["model"])
    return _build(TrainConfig, d)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (``over`` wins; lists are replaced, not merged)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MsfError(f"config file not found: {path}")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise MsfError(f"cannot parse config {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise MsfError(f"config {path} must hold a mapping")
    return data


def parse_phases(text: str) -> list[dict[str, Any]]:
    """``"24x256@16,20x512/384@12,8x512+256+384@8"`` -> phases of
    (epochs x size[/crop | +scale...] @ batch)."""
    phases = []
    for part in text.split(","):
        try:
            ep, rest = part.strip().split("x")
            size, batch = rest.split("@")
            phase: dict[str, Any] = {"epochs": int(ep), "batch": int(batch)}
            if "/" in size:
                size, crop = size.split("/")
                phase["crop"] = int(crop)
            elif "+" in size:
                size, *scales = size.split("+")
                phase["scales"] = [int(s) for s in scales]
            phase["size"] = int(size)
        except ValueError:
            raise MsfError(f"bad phase {part!r}: expected EPOCHSxSIZE[/CROP | +SIZE2...]@BATCH, e.g. "
                           "24x256@16, 20x512/384@12 or 8x512+256+384@8") from None
        if phase.get("crop") is not None and not 32 <= phase["crop"] <= phase["size"]:
            raise MsfError(f"bad phase {part!r}: the crop must be between 32 and the size")
        if any(not 32 <= s <= 4096 or s % 32 for s in phase.get("scales", ())):
            raise MsfError(f"bad phase {part!r}: extra sizes must be multiples of 32 between 32 and 4096")
        phases.append(phase)
    return phases
