"""Two-stream co-attentional fusion (ViLBERT, Lu et al. 2019)."""

from __future__ import annotations

from torch import Tensor, nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .base import FUSIONS, Fusion, FusionOutput
from .layers import Attention, Pooler, TransformerLayer, pair_pooling, pool_states, project


class CoAttentionBlock(GradientCheckpointingLayer):
    """Text queries attend to image keys/values and image queries to text ones, both at ``co_width`` (streams of
    other widths are projected in and out), each with a pre-norm residual. Both directions read the input states.
    """

    def __init__(self, text_width: int, image_width: int, co_width: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.text_norm, self.image_norm = nn.LayerNorm(text_width), nn.LayerNorm(image_width)
        self.text_to_image = Attention(co_width, num_heads, kv_width=image_width, dropout=dropout,
                                       query_width=text_width, out_width=text_width)
        self.image_to_text = Attention(co_width, num_heads, kv_width=text_width, dropout=dropout,
                                       query_width=image_width, out_width=image_width)
        self.drop = nn.Dropout(dropout)

    def forward(self, text: Tensor, image: Tensor, text_mask: Tensor, image_mask: Tensor) -> tuple[Tensor, Tensor]:
        t, i = self.text_norm(text), self.image_norm(image)
        text = text + self.drop(self.text_to_image(t, i, key_mask=image_mask))
        image = image + self.drop(self.image_to_text(i, t, key_mask=text_mask))
        return text, image


class CoAttentionLayer(nn.Module):
    """One ViLBERT layer: co-attention, then per-stream self-attention and feed-forward."""

    def __init__(self, text_width: int, image_width: int, co_width: int, spec) -> None:
        super().__init__()
        self.co = CoAttentionBlock(text_width, image_width, co_width, spec.num_heads, spec.dropout)
        self.text = TransformerLayer(text_width, spec.num_heads, spec.intermediate_size, spec.dropout)
        self.image = TransformerLayer(image_width, spec.num_heads, spec.intermediate_size, spec.dropout)

    def forward(self, text: Tensor, image: Tensor, text_mask: Tensor, image_mask: Tensor) -> tuple[Tensor, Tensor]:
        text, image = self.co(text, image, text_mask, image_mask)
        return self.text(text, text_mask), self.image(image, image_mask)


@FUSIONS.register("co_attention")
class CoAttentionFusion(Fusion):
    """Text stream (``text_hidden_size``) and image stream (``image_hidden_size``), defaults the tower widths, with
    tower tokens projected in where they differ; ``num_layers`` co-attention layers at ``co_hidden_size``
    (default: text stream width).

    Outputs: text_tokens (B, Lt, Ht) with text_mask, image_tokens (B, Li, Hi), pair_embeds (B, Hc) = the product
    of the two pooled streams, each mapped to Hc by Linear + tanh (ViLBERT's "mul" fusion). Each stream is pooled
    by :func:`~mmzoo.fusion.layers.pair_pooling` (max over tokens for mean-pooling towers, else the first token).
    """

    def __init__(self, spec, dims, config=None) -> None:
        super().__init__(spec, dims, config)
        text_width = spec.text_hidden_size or dims.text_width
        image_width = spec.image_hidden_size or dims.image_width
        co_width = spec.co_hidden_size or text_width
        for key, width in (("text_hidden_size", text_width), ("image_hidden_size", image_width),
                           ("co_hidden_size", co_width)):
            if width % spec.num_heads:
                raise ValueError(
                    f"fusion.{key}: the co_attention width {width} (from the towers when unset) is not divisible by "
                    f"fusion.num_heads {spec.num_heads}; set fusion.{key} or fusion.num_heads"
                )
        self.text_in = project(dims.text_width, text_width)
        self.image_in = project(dims.image_width, image_width)
        self.layers = nn.ModuleList(
            CoAttentionLayer(text_width, image_width, co_width, spec) for _ in range(spec.num_layers)
        )
        self.text_norm, self.image_norm = nn.LayerNorm(text_width), nn.LayerNorm(image_width)
        self.text_pooler, self.image_pooler = Pooler(text_width, co_width), Pooler(image_width, co_width)
        self.pair_dim, self.text_token_dim = co_width, text_width
        self.image_token_dim = image_width
        self.pooling = {m: pair_pooling(config, m) for m in ("text", "image")}

    def forward(self, text, image, inputs=None) -> FusionOutput:
        t, i = self.text_in(text.tokens), self.image_in(image.tokens)
        for layer in self.layers:
            t, i = layer(t, i, text.mask, image.mask)
        t, i = self.text_norm(t), self.image_norm(i)
        pair = (self.text_pooler(pool_states(self.pooling["text"], t, text.mask))
                * self.image_pooler(pool_states(self.pooling["image"], i, image.mask)))
        return FusionOutput(text_tokens=t, text_mask=text.mask, image_tokens=i, pair_embeds=pair)
