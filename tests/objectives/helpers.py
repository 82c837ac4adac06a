"""Tiny models with any fusion/objectives on the mm-albef-tiny towers (BERT/ViT, hidden 32, 32 px; one layer,
mean pooling)."""

from __future__ import annotations

import mmzoo
from tests.common import batch

BASE_PRESET = "mm-albef-tiny"
TEACHERS = {  # config-built tiny teachers sharing the tiny tokenizer's vocabulary (no download)
    "text": {"config": {"model_type": "bert", "vocab_size": 300, "hidden_size": 24, "num_hidden_layers": 1,
                        "num_attention_heads": 2, "intermediate_size": 48, "max_position_embeddings": 64},
             "pretrained": False},
    "image": {"config": {"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 24,
                         "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 48},
              "pretrained": False},
}
TINY_FUSION = {  # tiny settings per fusion type (fusion layers kept to one)
    "dual_encoder": {},
    "single_stream": {"num_layers": 1, "num_heads": 4, "dropout": 0.0},
    "co_attention": {"num_layers": 1, "num_heads": 4, "dropout": 0.0},
    "cross_attention": {"num_layers": 1, "num_heads": 4, "dropout": 0.0},
    "gated": {"hidden_size": 16},
    "adversarial": {"hidden_size": 64, "num_layers": 2},
    "distillation": {"teachers": TEACHERS},
}
TINY_OBJECTIVE = {"captioning": {"num_layers": 1, "dropout": 0.0, "max_length": 32}}


def tiny_spec_dict(fusion: str | dict, objectives: list, name: str = "test-tiny") -> dict:
    """The mm-albef-tiny spec with ``fusion`` (a type or a full dict) and ``objectives`` (types or dicts)."""
    spec = mmzoo.load_spec(BASE_PRESET).to_dict()
    spec["name"] = name
    for encoder in spec["encoders"]:
        encoder["config"]["num_hidden_layers"] = 1  # one tower layer is enough here
        encoder["pooling"] = "mean"  # random-init towers: [CLS] states start near-identical, mean pooling learns fast
    spec["fusion"] = {"type": fusion, **TINY_FUSION.get(fusion, {})} if isinstance(fusion, str) else fusion
    spec["objectives"] = [{"type": o, **TINY_OBJECTIVE.get(o, {})} if isinstance(o, str) else o for o in objectives]
    return spec


def tiny_spec(fusion: str | dict, objectives: list, name: str = "test-tiny"):
    return mmzoo.load_spec(tiny_spec_dict(fusion, objectives, name))


def tiny_model(fusion, objectives, model_class=None):
    spec = tiny_spec(fusion, objectives)
    return mmzoo.build_model(spec, model_class=model_class), mmzoo.build_processor(spec)


def tiny_batch(processor, n: int = 4):
    return dict(batch(processor, n))
