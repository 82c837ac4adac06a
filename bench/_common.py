"""Shared pieces of the benchmarks: the tiny-CLIP architecture, the four systems built to it, batches, timing
statistics and process memory. Imported by the bench scripts (``bench/`` is on ``sys.path`` when they run).

Systems (same architecture, dropout 0, exact GELU, LayerNorm eps 1e-5, vocab ``Arch.vocab``, no biases on the
projections; residual differences are listed in ``bench/README.md``):

* ``mmzoo``: ``mmzoo.build_model(spec)``, BERT text tower + ViT vision tower (HF, SDPA), CLS pooling, contrastive.
* ``open_clip``: ``open_clip.CLIP`` (pre-norm, causal text with EOT pooling: open_clip's default text tower).
* ``hf_dual``: ``transformers.VisionTextDualEncoderModel`` with the same ViT and BERT configs.
* ``floor``: a hand-written PyTorch dual encoder (fused qkv, SDPA, CLS pooling): the speed to beat.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a checkout without `pip install -e`
    sys.path.insert(0, str(REPO_ROOT))

MIB = 1024**2
SYSTEMS = ("mmzoo", "open_clip", "hf_dual", "floor")


@dataclass(frozen=True)
class Arch:
    """The tiny CLIP of the train_step benchmark (issue 7)."""

    image_size: int = 64
    patch_size: int = 8
    width: int = 192
    layers: int = 4
    heads: int = 3
    context: int = 32
    vocab: int = 49408
    projection: int = 128

    @property
    def mlp(self) -> int:
        return 4 * self.width


QUICK_ARCH = Arch(image_size=32, patch_size=8, width=32, layers=1, heads=2, context=8, vocab=512, projection=16)


# -- systems ------------------------------------------------------------------------------------------------
@dataclass
class System:
    """``loss(batch)`` runs the forward and the symmetric InfoNCE loss; ``model`` holds every parameter."""

    name: str
    model: object
    loss: Callable[[dict], object]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def mmzoo_spec(arch: Arch) -> dict:
    common = dict(hidden_size=arch.width, num_hidden_layers=arch.layers, num_attention_heads=arch.heads,
                  intermediate_size=arch.mlp, hidden_act="gelu", layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    return {
        "name": "bench-tiny-clip",
        "projection_dim": arch.projection,
        "encoders": [
            {"modality": "text", "pooling": "cls", "tokenizer": "mmzoo:wordpiece-basic",
             "config": {"model_type": "bert", "vocab_size": arch.vocab, "max_position_embeddings": arch.context,
                        **common}},
            {"modality": "image", "pooling": "cls",
             "config": {"model_type": "vit", "image_size": arch.image_size, "patch_size": arch.patch_size, **common}},
        ],
        "fusion": {"type": "dual_encoder"},
        "objectives": [{"type": "contrastive"}],
    }


def build_mmzoo(arch: Arch) -> System:
    import mmzoo

    model = mmzoo.build_model(mmzoo_spec(arch)).train()
    return System("mmzoo", model, lambda b: model(**b, return_loss=True).loss)


def build_hf_dual(arch: Arch) -> System:
    from transformers import AutoConfig, VisionTextDualEncoderConfig, VisionTextDualEncoderModel

    spec = mmzoo_spec(arch)
    text = {k: v for k, v in spec["encoders"][0]["config"].items() if k != "model_type"}
    vision = {k: v for k, v in spec["encoders"][1]["config"].items() if k != "model_type"}
    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        AutoConfig.for_model("vit", **vision), AutoConfig.for_model("bert", **text), projection_dim=arch.projection
    )
    model = VisionTextDualEncoderModel(config=config).train()
    return System("hf_dual", model, lambda b: model(**b, return_loss=True).loss)


def build_open_clip(arch: Arch) -> System:
    import open_clip

    model = open_clip.CLIP(
        embed_dim=arch.projection,
        vision_cfg=open_clip.CLIPVisionCfg(layers=arch.layers, width=arch.width, head_width=arch.width // arch.heads,
                                           patch_size=arch.patch_size, image_size=arch.image_size),
        text_cfg=open_clip.CLIPTextCfg(context_length=arch.context, vocab_size=arch.vocab, width=arch.width,
                                       heads=arch.heads, layers=arch.layers),
        output_dict=True,
    ).train()

    def loss(b):
        out = model(b["pixel_values"], b["open_clip_text"])
        return clip_loss(out["logit_scale"] * out["image_features"] @ out["text_features"].t())

    return System("open_clip", model, loss)


def build_floor(arch: Arch) -> System:
    model = FloorCLIP(arch).train()
    return System("floor", model, model.loss)


BUILDERS: dict[str, Callable[[Arch], System]] = {
    "mmzoo": build_mmzoo, "open_clip": build_open_clip, "hf_dual": build_hf_dual, "floor": build_floor,
}


class _Block(nn.Module):
    """Pre-norm transformer layer: one fused qkv matmul, SDPA, exact GELU MLP."""

    def __init__(self, width: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, mlp), nn.Linear(mlp, width)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.out(attn.transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class FloorCLIP(nn.Module):
    """The hand-written floor: ViT (conv patches, CLS, learned positions) and a bidirectional text encoder
    (token + position embeddings, embedding LayerNorm, padding mask), CLS pooling, bias-free projections."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        w, grid = arch.width, arch.image_size // arch.patch_size
        self.patch = nn.Conv2d(3, w, arch.patch_size, arch.patch_size)
        self.cls = nn.Parameter(torch.randn(1, 1, w) * 0.02)
        self.vpos = nn.Parameter(torch.randn(1, grid * grid + 1, w) * 0.02)
        self.vblocks = nn.ModuleList(_Block(w, arch.heads, arch.mlp) for _ in range(arch.layers))
        self.vln = nn.LayerNorm(w)
        self.tok = nn.Embedding(arch.vocab, w)
        self.tpos = nn.Parameter(torch.randn(1, arch.context, w) * 0.02)
        self.tln_in = nn.LayerNorm(w)
        self.tblocks = nn.ModuleList(_Block(w, arch.heads, arch.mlp) for _ in range(arch.layers))
        self.tln = nn.LayerNorm(w)
        self.vproj = nn.Linear(w, arch.projection, bias=False)
        self.tproj = nn.Linear(w, arch.projection, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, px: Tensor) -> Tensor:
        x = self.patch(px).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.vpos
        for block in self.vblocks:
            x = block(x)
        return F.normalize(self.vproj(self.vln(x[:, 0])), dim=-1)

    def encode_text(self, ids: Tensor, mask: Tensor) -> Tensor:
        x = self.tln_in(self.tok(ids) + self.tpos[:, : ids.shape[1]])
        keep = mask.bool()[:, None, None, :]
        for block in self.tblocks:
            x = block(x, keep)
        return F.normalize(self.tproj(self.tln(x[:, 0])), dim=-1)

    def loss(self, b: dict) -> Tensor:
        image, text = self.encode_image(b["pixel_values"]), self.encode_text(b["input_ids"], b["attention_mask"])
        return clip_loss(self.logit_scale.exp() * image @ text.t())


def clip_loss(logits_per_image: Tensor) -> Tensor:
    """Symmetric InfoNCE on (B, B) logits (as open_clip.ClipLoss and mmzoo's contrastive objective)."""
    labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_image.t(), labels)) / 2


# -- inputs -------------------------------------------------------------------------------------------------
def make_batch(arch: Arch, batch_size: int, seed: int = 0) -> dict:
    """Random images and right-padded texts (lengths 8..context), identical for every system.

    ``input_ids`` start with [CLS]=2 and end with [SEP]=3 (BERT style); ``open_clip_text`` is the same token
    sequence with the EOT token given the largest id, as open_clip's argmax pooling expects, and 0 padding.
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, arch.vocab - 1, (batch_size, arch.context), generator=g)
    lengths = torch.randint(min(8, arch.context), arch.context + 1, (batch_size,), generator=g)
    mask = (torch.arange(arch.context)[None, :] < lengths[:, None]).long()
    ids[:, 0] = 2
    ids[torch.arange(batch_size), lengths - 1] = 3
    ids = ids * mask
    eot = ids.clone()
    eot[torch.arange(batch_size), lengths - 1] = arch.vocab - 1
    pixels = torch.randn(batch_size, 3, arch.image_size, arch.image_size, generator=g)
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels, "open_clip_text": eot}


def system_inputs(name: str, batch: dict) -> dict:
    """The keys a system's ``loss`` reads."""
    keys = ("pixel_values", "open_clip_text") if name == "open_clip" else ("input_ids", "attention_mask",
                                                                           "pixel_values")
    return {k: batch[k] for k in keys}


def make_optimizer(model):
    """AdamW as mmzoo's Trainer builds it by default (transformers' ``adamw_torch_fused``)."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0,
                             fused=True)


def train_step(system: System, optimizer, batch: dict) -> float:
    loss = system.loss(batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


# -- statistics and memory ----------------------------------------------------------------------------------
def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak RSS (``VmHWM``). Not ``ru_maxrss``: after fork + exec that still holds the parent's peak."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024


def reset_peak_rss() -> None:
    """Set the peak RSS to the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def versions() -> dict[str, str]:
    import transformers

    out = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import open_clip

        out["open_clip"] = open_clip.__version__
    except ImportError:
        out["open_clip"] = "not installed"
    return out


def arch_dict(arch: Arch) -> dict:
    return {**asdict(arch), "mlp": arch.mlp}


def arch_from_args(args, default: Arch | None = None) -> Arch:
    """The architecture a script runs: ``--arch-json`` (set by a parent process), else quick or default."""
    if getattr(args, "arch_json", None):
        import json

        return Arch(**{k: v for k, v in json.loads(args.arch_json).items() if k != "mlp"})
    return QUICK_ARCH if args.quick else (default or Arch())


def write_json(path: Path | None, out: dict) -> None:
    """Write a script's result as JSON when ``--json PATH`` was given."""
    if path is not None:
        import json

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1))
