"""Cross-attention fusion: text layers that attend to image tokens (ALBEF, Li et al. 2021; BLIP, Li et al. 2022)."""

from __future__ import annotations

from torch import nn

from .base import FUSIONS, Fusion, FusionOutput, transformer_width
from .layers import TransformerLayer, pair_pooling, pool_states, project


@FUSIONS.register("cross_attention")
class CrossAttentionFusion(Fusion):
    """``num_layers`` layers of text self-attention + cross-attention to the image tokens + feed-forward, at
    ``hidden_size`` (default: text width; text tokens are projected in when it differs).

    Outputs: text_tokens (B, Lt, H) with text_mask, image_tokens (the image tower's, unchanged), pair_embeds (B, H)
    = the text states pooled by :func:`~mmzoo.fusion.layers.pair_pooling` (the first, [CLS], state as ALBEF's ITM
    head reads it; the max over tokens for a mean-pooling text tower).
    """

    def __init__(self, spec, dims, config=None) -> None:
        super().__init__(spec, dims, config)
        width = transformer_width(spec, dims)
        self.text_in = project(dims.text_width, width)
        self.layers = nn.ModuleList(
            TransformerLayer(width, spec.num_heads, spec.intermediate_size, spec.dropout, cross_width=dims.image_width)
            for _ in range(spec.num_layers)
        )
        self.final_norm = nn.LayerNorm(width)
        self.pair_dim = self.text_token_dim = width
        self.image_token_dim = dims.image_width
        self.pooling = pair_pooling(config, "text")

    def forward(self, text, image, inputs=None) -> FusionOutput:
        x = self.text_in(text.tokens)
        for layer in self.layers:
            # positional arguments: reentrant gradient checkpointing only tracks gradients of positional inputs
            x = layer(x, text.mask, image.tokens, image.mask)
        x = self.final_norm(x)
        return FusionOutput(text_tokens=x, text_mask=text.mask, image_tokens=image.tokens,
                            pair_embeds=pool_states(self.pooling, x, text.mask))
