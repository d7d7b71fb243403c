"""LoRA: low-rank adapters for genzoo's own transformer (Hu et al., 2021).

A chosen ``nn.Linear`` y = W x + b of a GPT block is wrapped as

    y = W x + b + (alpha / rank) * B A dropout(x),     A: (rank, in), B: (out, rank)

with W and b frozen. A starts Kaiming-uniform (as ``nn.Linear`` initialises its weight) and B at
zero, so the adapted model computes exactly what the base computes until the first update. Only
A and B train; ``merge_lora`` folds the update into W (W + scale * B A) and gives back plain
``nn.Linear`` layers, so a merged model runs at the base model's speed.

Why genzoo's own and not ``peft``: peft targets ``transformers`` modules by name; genzoo's GPT is
its own module tree (``genzoo.nn.transformer``), loaded from genzoo runs and from Hugging Face
folders alike, so the adapters are written here against it (a few dozen lines).

Fused projections. Attention computes q, k and v with ONE Linear (``attn.qkv``), and the SwiGLU
MLP gate and up with one (``mlp.gate_up``). The adapter is kept over the whole fused output:
B A with B of shape (q+k+v, rank). Splitting B by rows, that equals separate q / k / v adapters
that share one A, i.e. one rank-``rank`` input subspace for the three, with their own B's. It is
not the same as peft's three independent rank-r adapters on q_proj, k_proj and v_proj (those span
up to 3r input directions, with 3x the A parameters); to match that capacity give a rank 3x as
large. The choice keeps one matmul for the fused layer, merges straight into the fused weight,
and has fewer parameters; it is documented here rather than hidden.

Adapters on disk (``save_adapter``): ``adapter_model.safetensors`` holds only the A and B
matrices; ``adapter_config.json`` holds rank, alpha, dropout, targets, the wrapped modules, the
base checkpoint (its path and the sha256 of its weight file(s)) and a sha256 of the base
weights as tensors (``base_fingerprint``), which ``load_adapter`` checks against the model it is
given, so an adapter is never applied to another base.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.core.errors import GenzooError
from genzoo.nn.dropout import BatchDropout

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FORMAT = "genzoo-lora/1"

# What each target name adapts inside a transformer block (a layer absent from the block, such as
# gate_up in a GELU MLP, is skipped).
TARGETS = {
    "attention": ("attn.qkv", "attn.proj"),
    "mlp": ("mlp.fc", "mlp.gate_up", "mlp.proj"),
}
LAYERS = tuple(sorted({name for names in TARGETS.values() for name in names}))


class LoRALinear(nn.Module):
    """``base(x) + (alpha / rank) * B(A(dropout(x)))`` with ``base`` frozen (see the module doc)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise GenzooError(f"LoRA wraps nn.Linear layers, got {type(base).__name__}")
        if rank < 1:
            raise GenzooError(f"LoRA rank must be at least 1, got {rank}")
        if not 0 <= dropout < 1:
            raise GenzooError(f"LoRA dropout must lie in [0, 1), got {dropout}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank, self.alpha, self.scale = int(rank), float(alpha), float(alpha) / int(rank)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own initialisation
        self.dropout = BatchDropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:  # the base weight (code that reads layer.weight keeps working)
        return self.base.weight

    def delta_weight(self) -> torch.Tensor:
        """scale * B A: what merging adds to the base weight."""
        return (self.lora_B @ self.lora_A) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)
        return self.base(x) + update * self.scale

    def merged(self) -> nn.Linear:
        """The base layer with the update folded into its weight (computed in float32)."""
        with torch.no_grad():
            w = self.base.weight
            w.copy_((w.float() + self.delta_weight().float()).to(w.dtype))
        return self.base

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}"


def parse_targets(targets) -> tuple[str, ...]:
    """``"attention,mlp"`` or a sequence of names -> the layer paths inside a block to wrap."""
    if isinstance(targets, str):
        targets = [t for t in (s.strip() for s in targets.split(",")) if t]
    targets = list(targets or [])
    if not targets:
        raise GenzooError(f"give LoRA targets: {', '.join(TARGETS)} (or layers: {', '.join(LAYERS)})")
    layers: list[str] = []
    for t in targets:
        if t in TARGETS:
            layers += TARGETS[t]
        elif t in LAYERS:
            layers.append(t)
        else:
            raise GenzooError(f"unknown LoRA target {t!r}; choose from {', '.join(TARGETS)} or the layers {', '.join(LAYERS)}")
    return tuple(dict.fromkeys(layers))


def _blocks(model: nn.Module) -> nn.ModuleList:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise GenzooError(f"LoRA adapts transformer blocks (a text model's .blocks); {type(model).__name__} has none")
    return blocks


def _get(module: nn.Module, path: str):
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def _set(module: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(_get(module, parent) if parent else module, leaf, new)


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """Every adapted layer, by its module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def add_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, targets="attention,mlp", dropout: float = 0.0) -> list[str]:
    """Wrap the ``targets`` Linear layers of every block in ``LoRALinear`` (the embedding and the
    output layer are never adapted), freeze every base parameter, and return the names of the
    trainable adapter parameters. The model's outputs are unchanged until the adapters train."""
    if lora_modules(model):
        raise GenzooError("this model already has LoRA adapters; merge them (merge_lora) before adding new ones")
    layers = parse_targets(targets)
    blocks = _blocks(model)
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = []
    for i, block in enumerate(blocks):
        for path in layers:
            layer = _get(block, path)
            if isinstance(layer, nn.Linear):
                _set(block, path, LoRALinear(layer, rank, alpha, dropout))
                wrapped.append(f"blocks.{i}.{path}")
    if not wrapped:
        raise GenzooError(f"no layer of this model matches the LoRA targets {', '.join(layers)}")
    model._lora_config = {"rank": int(rank), "alpha": float(alpha), "dropout": float(dropout),
                          "targets": list(layers), "modules": wrapped}
    return [n for n, p in model.named_parameters() if p.requires_grad]


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights only (``...lora_A`` / ``...lora_B``), by their names in the model."""
    return {k: v for k, v in model.state_dict().items() if k.endswith((".lora_A", ".lora_B"))}


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The base model's weights under their original names, whether or not adapters are in place
    (``blocks.0.attn.qkv.base.weight`` -> ``blocks.0.attn.qkv.weight``; adapter weights left out)."""
    return {k.replace(".base.", "."): v for k, v in model.state_dict().items() if not k.endswith((".lora_A", ".lora_B"))}


def base_fingerprint(model: nn.Module) -> str:
    """sha256 of the base weights as tensors (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(base_state_dict(model).items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain ``nn.Linear`` back (in place).
    The merged layers stay frozen; the model is returned for chaining."""
    for name, m in lora_modules(model).items():
        _set(model, name, m.merged())
    if hasattr(model, "_lora_config"):
        del model._lora_config
    return model


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_adapter(model: nn.Module, directory: str | Path, base: dict | None = None) -> Path:
    """Write ``adapter_model.safetensors`` (adapter weights only) and ``adapter_config.json`` into
    ``directory``. ``base``: where the base came from (``genzoo.runs.adapters.base_info``), recorded as given."""
    from safetensors.torch import save_file

    cfg = getattr(model, "_lora_config", None)
    if cfg is None or not lora_modules(model):
        raise GenzooError("this model has no LoRA adapters to save (add_lora first; merged adapters are gone)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in lora_state_dict(model).items()}, str(directory / ADAPTER_WEIGHTS))
    meta = {"format": FORMAT, **cfg, "base": base or {}, "base_fingerprint": base_fingerprint(model),
            "trainable_parameters": sum(p.numel() for p in lora_state_dict(model).values())}
    (directory / ADAPTER_CONFIG).write_text(json.dumps(meta, indent=2))
    return directory


def read_adapter_config(directory: str | Path) -> dict:
    f = Path(directory) / ADAPTER_CONFIG
    if not f.is_file():
        raise GenzooError(f"{directory} has no {ADAPTER_CONFIG}; pass a folder written by `genzoo finetune` (save_adapter)")
    try:
        meta = json.loads(f.read_text())
        meta["rank"], meta["alpha"], meta["targets"], meta["base_fingerprint"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise GenzooError(f"{f} is corrupt or not a genzoo LoRA adapter config ({e})") from e
    return meta


def load_adapter(model: nn.Module, directory: str | Path, *, check_base: bool = True) -> dict:
    """Put the adapter saved in ``directory`` onto ``model`` (its base, without adapters or with
    the same layout); returns the adapter config. Refuses, with a GenzooError, a model whose base
    weights are not the ones the adapter was trained on (sha256 mismatch), adapter weights of the
    wrong shape, and missing or corrupt files."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_adapter_config(directory)
    weights = Path(directory) / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise GenzooError(f"{directory} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}; the adapter is incomplete")
    if check_base:
        have = base_fingerprint(model)
        if have != meta["base_fingerprint"]:
            where = meta.get("base", {}).get("path", "another model")
            raise GenzooError(f"wrong base model for the adapter in {directory}: it was trained on {where} "
                              f"(base weights sha256 {meta['base_fingerprint'][:16]}...), this model's weights hash to "
                              f"{have[:16]}...; load the base it was trained on")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise GenzooError(f"{weights} is corrupt ({e}); fine-tune again") from e
    if not lora_modules(model):
        add_lora(model, meta["rank"], meta["alpha"], meta["targets"], meta.get("dropout", 0.0))
    own = lora_state_dict(model)
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise GenzooError(f"the adapter in {directory} does not fit this model: missing {missing[:4]}, unexpected {extra[:4]}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise GenzooError(f"the adapter in {directory} does not fit this model: {k} has shape {tuple(v.shape)}, "
                              f"the model needs {tuple(own[k].shape)} (another rank or model size)")
    modules = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in state.items():
            modules[k].copy_(v.to(modules[k].dtype))
    return meta
