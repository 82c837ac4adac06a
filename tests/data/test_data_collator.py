"""ImageTextCollator with a stand-in processor made of real transformers parts (MiniLM tokenizer, ViT processor)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mmzoo.data import ImageTextCollator, load_builtin


def rows(n: int = 3) -> list[dict]:
    modes = ["RGB", "L", "RGBA", "P", "CMYK"]
    return [
        {"image": Image.new("RGB", (20 + i, 16), (40 * i, 0, 0)).convert(modes[i % len(modes)]),
         "captions": [f"caption {i} first", f"caption {i} second", f"caption {i} third"]}
        for i in range(n)
    ]


def texts_of(batch, tokenizer) -> list[str]:
    return tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)


def test_max_length_padding_shapes_and_modes(processor):
    batch = ImageTextCollator(processor, max_length=12, caption_sampling="first")(rows(5))
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values"}
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (5, 12)
    assert batch["pixel_values"].shape == (5, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert processor.calls[-1]["kwargs"] == {"truncation": True, "padding": "max_length", "return_tensors": "pt",
                                             "max_length": 12}
    assert texts_of(batch, processor.tokenizer) == [f"caption {i} first" for i in range(5)]


def test_truncation_and_longest_padding(processor):
    long = [{"image": Image.new("RGB", (8, 8)), "captions": [text]} for text in ("word " * 50, "hi")]
    assert ImageTextCollator(processor, max_length=10)(long)["input_ids"].shape == (2, 10)
    batch = ImageTextCollator(processor)(long)  # no max_length: pad to the longest, tokenizer's own limit
    assert batch["input_ids"].shape == (2, 52) and batch["attention_mask"][1].sum() == 3


def test_random_sampling_is_seeded_and_covers_captions(processor):
    data = rows(4)
    picks = []
    for seed in (0, 0, 1):
        collate = ImageTextCollator(processor, max_length=8, seed=seed)
        picks.append([tuple(texts_of(collate(data), processor.tokenizer)) for _ in range(6)])
    assert picks[0] == picks[1] and picks[0] != picks[2]
    seen = {text for step in picks[0] for text in step}
    assert {"caption 0 first", "caption 0 second", "caption 0 third"} <= seen  # every caption gets used


def test_all_captions_with_image_ids(processor):
    batch = ImageTextCollator(processor, max_length=8, caption_sampling="all")(rows(2))
    assert batch["input_ids"].shape == (6, 8) and batch["pixel_values"].shape[0] == 2
    assert batch["image_ids"].tolist() == [0, 0, 0, 1, 1, 1]


def test_negative_captions_become_negative_input_ids(processor):
    data = [{**row, "negative_captions": [f"negative {i} a", f"negative {i} b"]} for i, row in enumerate(rows(3))]
    batch = ImageTextCollator(processor, max_length=8, caption_sampling="first")(data)
    assert batch["negative_input_ids"].shape == batch["negative_attention_mask"].shape == (3, 8)
    assert processor.tokenizer.batch_decode(batch["negative_input_ids"], skip_special_tokens=True) == [
        f"negative {i} a" for i in range(3)]
    assert "negative_input_ids" not in ImageTextCollator(processor, max_length=8)(rows(3))  # only when the data has them
    everything = ImageTextCollator(processor, max_length=8, caption_sampling="all")(data)  # retrieval: no negatives
    assert "negative_input_ids" not in everything


def test_single_caption_string_is_accepted(processor):
    batch = ImageTextCollator(processor, max_length=8)([{"image": Image.new("RGB", (8, 8)), "caption": "only one"}])
    assert texts_of(batch, processor.tokenizer) == ["only one"]


def test_rows_stripped_by_the_trainer_get_a_clear_error(processor):
    with pytest.raises(ValueError, match=r"batch row 0: 'image' must be a PIL image.*remove_unused_columns=False"):
        ImageTextCollator(processor)([{"captions": ["x"]}])
    with pytest.raises(ValueError, match=r"batch row 1: needs 'captions'.*remove_unused_columns=False"):
        ImageTextCollator(processor)([rows(1)[0], {"image": Image.new("RGB", (8, 8)), "captions": []}])
    with pytest.raises(ValueError, match="caption_sampling must be"):
        ImageTextCollator(processor, caption_sampling="best")
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        ImageTextCollator(processor, padding="max_length")


def test_with_a_real_processor_mixin_and_a_dataloader(minilm_tokenizer):
    """End to end: builtin shapes -> torch DataLoader -> a transformers ProcessorMixin."""
    from transformers import ViTImageProcessorPil, VisionTextDualEncoderProcessor

    processor = VisionTextDualEncoderProcessor(ViTImageProcessorPil(size={"height": 32, "width": 32}), minilm_tokenizer)
    ds = load_builtin("shapes", num_samples=8, image_size=32)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=ImageTextCollator(processor, max_length=40))
    batches = list(loader)
    assert len(batches) == 2 and batches[0]["pixel_values"].shape == (4, 3, 32, 32)
    assert batches[0]["input_ids"].shape == (4, 40)
    text = minilm_tokenizer.decode(batches[0]["input_ids"][0], skip_special_tokens=True)
    assert text in ds[0]["captions"]
