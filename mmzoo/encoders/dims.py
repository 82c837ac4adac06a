"""What the towers and the tokenizer tell the components built on top of them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TowersAndTokens:
    """The towers' widths and the tokenizer's ids that every fusion and objective may need when it is built:
    ``text_width`` / ``image_width`` of the towers' token states, ``embed_dim`` of the shared projection space,
    the text ``vocab_size`` and the special token ids. ``MmzooModel`` derives it from its config
    (``towers_and_tokens``) and passes it to every fusion and objective as ``dims``."""

    text_width: int
    image_width: int
    embed_dim: int
    vocab_size: int
    pad_token_id: int = 0
    mask_token_id: int | None = None
    cls_token_id: int | None = None
    sep_token_id: int | None = None
    special_token_ids: tuple[int, ...] = ()
