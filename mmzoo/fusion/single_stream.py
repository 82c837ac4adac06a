"""Single-stream fusion: text and image tokens in one shared transformer (VisualBERT, Li et al. 2019; UNITER,
Chen et al. 2020)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import FUSIONS, Fusion, FusionOutput, transformer_width
from .layers import Pooler, TransformerLayer, pair_pooling, pool_states, project

TEXT, IMAGE = 0, 1  # modality (token type) ids of the joint sequence


@FUSIONS.register("single_stream")
class SingleStreamFusion(Fusion):
    """[text; image] tokens, each projected to ``hidden_size`` (default: text width), plus modality and position
    embeddings, then ``num_layers`` transformer layers over the joint key mask.

    Positions count real tokens only (text, then image), so padding never shifts an image token's position.
    Outputs: text_tokens (B, Lt, H) with text_mask, image_tokens (B, Li, H), pair_embeds (B, H) = pooler of the
    first text position ([CLS]), or of the max over the whole joint sequence when the text tower pools by mean
    (:func:`~mmzoo.fusion.layers.pair_pooling`).
    """

    def __init__(self, spec, dims, config=None) -> None:
        super().__init__(spec, dims, config)
        width = transformer_width(spec, dims)
        self.text_in = project(dims.text_width, width)
        self.image_in = project(dims.image_width, width)
        self.type_embeddings = nn.Embedding(2, width)
        self.position_embeddings = nn.Embedding(spec.max_positions, width)
        self.embed_norm = nn.LayerNorm(width)
        self.embed_drop = nn.Dropout(spec.dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(width, spec.num_heads, spec.intermediate_size, spec.dropout)
            for _ in range(spec.num_layers)
        )
        self.final_norm = nn.LayerNorm(width)
        self.pooler = Pooler(width)
        self.pair_dim = self.text_token_dim = width
        self.image_token_dim = width
        self.pooling = pair_pooling(config, "text")

    def embed(self, text_tokens: Tensor, image_tokens: Tensor, mask: Tensor) -> Tensor:
        """Joint input embeddings (B, Lt + Li, H) from tower tokens and the joint key mask."""
        joint = torch.cat([self.text_in(text_tokens), self.image_in(image_tokens)], dim=1)
        if joint.shape[1] > self.spec.max_positions:
            raise ValueError(
                f"fusion.max_positions: the joint sequence has {joint.shape[1]} tokens ({text_tokens.shape[1]} text + "
                f"{image_tokens.shape[1]} image) but max_positions is {self.spec.max_positions}; raise it"
            )
        types = torch.full(joint.shape[:2], TEXT, dtype=torch.long, device=joint.device)
        types[:, text_tokens.shape[1]:] = IMAGE
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)
        joint = joint + self.type_embeddings(types) + self.position_embeddings(positions)
        return self.embed_drop(self.embed_norm(joint))

    def forward(self, text, image, inputs=None) -> FusionOutput:
        mask = torch.cat([text.mask, image.mask.to(text.mask.dtype)], dim=1)
        x = self.embed(text.tokens, image.tokens, mask)
        for layer in self.layers:
            x = layer(x, mask)
        x = self.final_norm(x)
        n_text = text.tokens.shape[1]
        return FusionOutput(
            text_tokens=x[:, :n_text], text_mask=text.mask, image_tokens=x[:, n_text:],
            pair_embeds=self.pooler(pool_states(self.pooling, x, mask))
        )
