"""mmzoo.data.images: every PIL mode to RGB (16-bit and float scaled, not clipped), lazy JPEGs and draft decoding."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from mmzoo.data import JsonSourceSpec, load_source
from mmzoo.data.images import is_lazy_jpeg, open_image, prepare_image, target_size, to_rgb

RAMP16 = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)  # 0 .. 65535


def _rgb(image: Image.Image) -> np.ndarray:
    out = to_rgb(image)
    assert out.mode == "RGB" and out.size == image.size
    return np.asarray(out).astype(int)


def _gray_is(rgb: np.ndarray, expected: np.ndarray, tol: int = 1) -> None:
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert np.abs(rgb[..., 0] - expected).max() <= tol


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L"])
def test_sixteen_bit_grayscale_is_scaled_not_clipped(mode):
    image = Image.frombytes(mode, (16, 16), RAMP16.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    assert image.mode == mode and np.asarray(image).max() == 65535
    rgb = _rgb(image)
    _gray_is(rgb, np.rint(RAMP16 / 257.0))
    assert rgb.min() == 0 and rgb.max() == 255 and 120 < rgb.mean() < 135  # PIL's convert gives all 255


def test_sixteen_bit_png_through_load_source_is_not_white(tmp_path):
    Image.fromarray(RAMP16).save(tmp_path / "scan.png")
    assert Image.open(tmp_path / "scan.png").mode == "I;16"
    (tmp_path / "train.jsonl").write_text(json.dumps({"image": "scan.png", "caption": "a ramp"}) + "\n")
    ds = load_source(JsonSourceSpec(files="train.jsonl"), tmp_path, cache_dir=str(tmp_path / "cache"))
    rgb = np.asarray(ds[0]["image"]).astype(int)
    assert ds[0]["image"].mode == "RGB"
    _gray_is(rgb, np.rint(RAMP16 / 257.0))


def test_int32_mode_holding_16_bit_values_is_scaled():
    _gray_is(_rgb(Image.fromarray(RAMP16.astype(np.int32), mode="I")), np.rint(RAMP16 / 257.0))


def test_int32_mode_with_other_ranges_is_stretched():
    values = np.linspace(-1000, 100000, 64).reshape(8, 8).astype(np.int32)
    _gray_is(_rgb(Image.fromarray(values, mode="I")), np.rint((values + 1000) * 255 / 101000))


def test_float_in_unit_range_is_times_255():
    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    _gray_is(_rgb(Image.fromarray(values, mode="F")), np.rint(values * 255))


def test_float_out_of_unit_range_is_stretched_and_nan_safe():
    values = np.linspace(-3, 5, 64, dtype=np.float32).reshape(8, 8)
    _gray_is(_rgb(Image.fromarray(values, mode="F")), np.rint((values + 3) * 255 / 8))
    values[0, 0] = np.nan
    assert _rgb(Image.fromarray(values, mode="F")).shape == (8, 8, 3)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "RGBa", "La"])
def test_transparency_is_composited_on_white(mode):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 10, 10, 255)  # opaque red
    rgba[0, 1] = (200, 10, 10, 0)  # fully transparent: white
    rgba[1, 0] = (0, 0, 0, 0)  # transparent black: white, not black
    rgba[1, 1] = (0, 0, 0, 255)
    image = Image.fromarray(rgba)
    image = image.convert("LA").convert("La") if mode == "La" else image.convert(mode)  # PIL's RGBA->La drops alpha
    rgb = _rgb(image)
    assert rgb[0, 1].tolist() == [255, 255, 255] and rgb[1, 0].tolist() == [255, 255, 255]
    assert rgb[1, 1].tolist() == [0, 0, 0]
    if mode in ("RGBA", "RGBa", "PA"):
        assert np.abs(rgb[0, 0] - [200, 10, 10]).max() <= 2


def test_palette_with_transparency_is_composited_on_white():
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    assert _rgb(image).tolist() == [[[255, 255, 255], [255, 0, 0]]]


@pytest.mark.parametrize("mode", ["1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"])
def test_eight_bit_modes_match_pils_conversion(mode):
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    image = source.convert(mode)
    assert np.array_equal(_rgb(image), np.asarray(image.convert("RGB")).astype(int))
    if mode in ("L", "1"):
        assert np.unique(_rgb(image)).size > 1  # not a constant image


def test_rgb_is_returned_as_is():
    image = Image.new("RGB", (3, 3), (1, 2, 3))
    assert to_rgb(image) is image


def _jpeg(size=(500, 380), mode="RGB", exif=None) -> bytes:
    rng = np.random.default_rng(1)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    small.convert(mode).save(buffer, "JPEG", quality=90, **({"exif": exif} if exif else {}))
    return buffer.getvalue()


def test_jpeg_opens_lazily_and_drafts_to_at_least_the_target():
    image = open_image({"bytes": _jpeg(), "path": None})
    assert is_lazy_jpeg(image) and image.mode == "RGB" and image.size == (500, 380)
    # scale 1/2 would give 250 x 190 < 224: the draft keeps the full size
    assert prepare_image(image, (224, 224)).size == (500, 380)
    out = prepare_image(open_image({"bytes": _jpeg((500, 480)), "path": None}), (224, 224))
    assert out.mode == "RGB" and out.size == (250, 240)  # DCT scale 1/2
    assert prepare_image(open_image({"bytes": _jpeg((1000, 990)), "path": None}), (224, 224)).size == (250, 248)
    full = prepare_image(open_image({"bytes": _jpeg(), "path": None}), None)
    assert full.size == (500, 380) and not is_lazy_jpeg(full)


def test_draft_never_goes_below_the_target_size():
    for size in [(500, 380), (448, 448), (1000, 700), (230, 230)]:
        out = prepare_image(open_image({"bytes": _jpeg(size), "path": None}), (224, 224))
        assert min(out.size) >= 224 or out.size == size, (size, out.size)


def test_draft_then_resize_is_close_to_the_full_decode():
    data = _jpeg((512, 512))
    drafted = prepare_image(open_image({"bytes": data, "path": None}), (224, 224))
    full = prepare_image(open_image({"bytes": data, "path": None}))
    assert drafted.size == (256, 256) and full.size == (512, 512)
    a = np.asarray(drafted.resize((224, 224), Image.Resampling.BICUBIC)).astype(int)
    b = np.asarray(full.resize((224, 224), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(a - b).mean() < 3  # a smooth image: the DCT downscale differs by rounding only


def test_grayscale_and_rotated_jpegs_are_decoded_at_once():
    gray = open_image({"bytes": _jpeg(mode="L"), "path": None})
    assert not is_lazy_jpeg(gray) and gray.mode == "RGB"
    exif = Image.Exif()
    exif[Image.ExifTags.Base.Orientation] = 6  # rotate 90
    rotated = open_image({"bytes": _jpeg((500, 380), exif=exif.tobytes()), "path": None})
    assert not is_lazy_jpeg(rotated) and rotated.size == (380, 500)


def test_jpeg_from_a_path_keeps_no_file_open(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg())
    image = open_image(str(path))
    assert is_lazy_jpeg(image) and not hasattr(image.fp, "name")  # bytes in memory, not the file
    assert prepare_image(image, (100, 100)).size == (250, 190)  # 1/4 would give 95 < 100


def test_target_size_reads_the_image_processor():
    class P:
        def __init__(self, size):
            self.image_processor = type("IP", (), {"size": size})()

    assert target_size(P({"height": 224, "width": 200})) == (200, 224)
    assert target_size(P({"shortest_edge": 96})) == (96, 96)
    assert target_size(P(None)) is None and target_size(object()) is None


# -- image_features: the processor's pixel_values without its per-image detours -----------------------------------
def _random_images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.mark.parametrize("settings", [
    {},  # mmzoo's default: ViT mean/std 0.5, bilinear
    {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
     "resample": Image.Resampling.BICUBIC, "rescale_factor": 1 / 127.5},
    {"do_normalize": False},
    {"size": {"height": 48, "width": 64}},
], ids=["vit", "clip-stats-bicubic", "no-normalise", "not-square"])
def test_image_features_are_bitwise_the_processors(settings):
    import torch
    from transformers import ViTImageProcessorPil

    from mmzoo.data.images import fast_pixel_values, image_features

    processor = ViTImageProcessorPil(**{"size": {"height": 32, "width": 32}, **settings})
    images = _random_images([(50, 40), (32, 32), (17, 90), (300, 301)])
    expected = processor(images=images, return_tensors="pt")["pixel_values"]
    got = fast_pixel_values(processor, images, "pt")
    assert got is not None and got.dtype == expected.dtype and torch.equal(got, expected)
    assert np.array_equal(image_features(processor, images, "np")["pixel_values"],
                          processor(images=images, return_tensors="np")["pixel_values"])


def test_image_features_draft_lazy_jpegs_and_equal_the_processor_on_the_drafted_image():
    import torch
    from transformers import ViTImageProcessorPil

    from mmzoo.data.images import fast_pixel_values

    processor = ViTImageProcessorPil(size={"height": 64, "width": 64})
    buffer = io.BytesIO()
    _random_images([(300, 280)])[0].save(buffer, "JPEG", quality=90)
    lazy = open_image({"bytes": buffer.getvalue(), "path": None})
    assert is_lazy_jpeg(lazy)
    got = fast_pixel_values(processor, [lazy], "pt")
    drafted = prepare_image(open_image({"bytes": buffer.getvalue(), "path": None}), (64, 64))
    assert drafted.size == (75, 70)  # 1/4 scale: the smallest >= 64 px
    assert torch.equal(got, processor(images=[drafted], return_tensors="pt")["pixel_values"])


def test_image_features_leave_other_settings_and_inputs_to_the_processor():
    from transformers import CLIPImageProcessorPil, ViTImageProcessorPil

    from mmzoo.data.images import fast_pixel_values, image_features

    vit = ViTImageProcessorPil(size={"height": 32, "width": 32})
    images = _random_images([(40, 40), (50, 30)])
    clip = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})  # crop
    assert fast_pixel_values(clip, images, "pt") is None
    assert np.array_equal(image_features(clip, images, "np")["pixel_values"],
                          clip(images=images, return_tensors="np")["pixel_values"])
    assert fast_pixel_values(vit, [images[0].convert("L")], "pt") is None  # the processor's own mode rules
    assert fast_pixel_values(vit, [np.asarray(images[0])], "pt") is None  # arrays, tensors: its general path
    assert fast_pixel_values(vit, images, None) is None  # lists of arrays


def test_mmzoo_processor_gives_the_image_processors_pixel_values():
    import torch

    import mmzoo

    processor = mmzoo.build_processor("mm-clip-tiny")
    images = _random_images([(64, 48), (20, 20)])
    ours = processor(text=["a red circle", "two squares"], images=images)["pixel_values"]
    assert torch.equal(ours, processor.image_processor(images=images, return_tensors="pt")["pixel_values"])
