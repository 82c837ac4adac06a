"""transformers' own model contract, run against every mmzoo model class.

transformers ships its common model tests (``ModelTesterMixin`` in ``tests/test_modeling_common.py``, ``ConfigTester``
in ``tests/test_configuration_common.py``) in its source distribution on PyPI. This module downloads the sdist of the
*installed* transformers version at test time (``pip download --no-binary :all: --no-deps``), extracts those two
files into a cache folder (``$MMZOO_TEST_CACHE``, default ``~/.cache/mmzoo-tests``) and runs them here against the
dual encoder, the sigmoid model, the co-attention and cross-attention models, the zero-shot, VQA and captioning
heads. Nothing of transformers' test-suite is copied into this repository. Without a reachable package index the
module skips, saying so.

The sdist lacks three modules ``test_modeling_common`` / ``test_configuration_common`` import
(``tests/exporters/test_export.py``, ``tests/generation/test_utils.py``, ``tests/utils/test_configuration_utils.py``);
the cache gets minimal stand-ins for them (``STANDINS`` below): an empty ``ExportTesterMixin`` (so the
``torch.export`` tests are absent, see ``test_torch_exportable`` below), an empty ``GenerationTesterMixin``
(``generate()`` is tested by ``tests/modeling/test_heads.py`` and ``test_generate_*`` here instead) and an empty
``config_common_kwargs`` (``ConfigTester`` skips that check for composite configs anyway).

Runtime: every class runs in the default suite (about 1.5 min for all seven on 2 idle cores).

Skips, each justified for a composite vision-text model (the same ones transformers' CLIP / SigLIP / BLIP tests
make), are in ``COMPOSITE_SKIPS`` with their reason.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tarfile
import unittest
from pathlib import Path

import pytest
import torch
import transformers

pytest.importorskip("parameterized", reason="test extra `parameterized` (transformers' common tests import it)")

from mmzoo.builder import build_config  # noqa: E402
from mmzoo.modeling import (  # noqa: E402
    MmzooConfig,
    MmzooForConditionalGeneration,
    MmzooForVisualQuestionAnswering,
    MmzooForZeroShotImageClassification,
    MmzooModel,
)
from mmzoo.modeling.auto import model_class_for  # noqa: E402
from mmzoo.presets import preset_path  # noqa: E402
from mmzoo.specs import ModelSpec  # noqa: E402

VERSION = transformers.__version__
CACHE = Path(os.environ.get("MMZOO_TEST_CACHE") or Path.home() / ".cache" / "mmzoo-tests")
PACKAGE = "transformers_common_tests"  # the package the extracted files form inside the cache folder
MEMBERS = ("tests/test_modeling_common.py", "tests/test_configuration_common.py")
STANDINS = {  # modules the two files import that the sdist does not ship (written here, not copied)
    "exporters/test_export.py": "class ExportTesterMixin:  # stand-in: the sdist has no exporters tests\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:  # stand-in: not in the sdist\n    pass\n",
    "utils/test_configuration_utils.py": "config_common_kwargs = {}  # stand-in: not in the sdist\n",
}


def _fetch_common_tests() -> Path:
    """The cache folder holding package ``PACKAGE`` with transformers' common tests of the installed version."""
    root = CACHE / f"transformers-{VERSION}"
    package = root / PACKAGE
    if all((package / Path(m).name).is_file() for m in MEMBERS):
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"transformers-{VERSION}.tar.gz"
    if not sdist.is_file():
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                 f"transformers=={VERSION}", "-d", str(CACHE)],
                capture_output=True, text=True, timeout=900,
            )
        except subprocess.TimeoutExpired:
            proc = None
        if proc is None or proc.returncode != 0 or not sdist.is_file():
            detail = "timed out" if proc is None else (proc.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"cannot download the transformers {VERSION} sdist (no package index reachable?): {detail}",
                        allow_module_level=True)
    with tarfile.open(sdist) as archive:
        for member in MEMBERS:
            data = archive.extractfile(f"transformers-{VERSION}/{member}").read()
            target = package / Path(member).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    for relative, text in STANDINS.items():
        target = package / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        (target.parent / "__init__.py").touch()
    (package / "__init__.py").touch()
    return root


sys.path.insert(0, str(_fetch_common_tests()))
common = importlib.import_module(f"{PACKAGE}.test_modeling_common")
ModelTesterMixin = common.ModelTesterMixin
ConfigTester = importlib.import_module(f"{PACKAGE}.test_configuration_common").ConfigTester


# -- tiny specs, one per model kind -----------------------------------------------------------------------------
def _spec(preset: str, **changes) -> dict:
    spec = ModelSpec.from_file(preset_path(preset)).to_dict()
    spec.update(changes)
    for enc in spec["encoders"]:  # dropout off: the mixin compares outputs of separate forwards
        enc["config"] = {**enc["config"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    if "dropout" in spec["fusion"]:
        spec["fusion"]["dropout"] = 0.0
    for objective in spec["objectives"]:
        if "dropout" in objective:
            objective["dropout"] = 0.0
    return spec


def _captioning_spec() -> dict:
    spec = _spec("mm-clip-tiny")
    spec["objectives"] = spec["objectives"] + [{"type": "captioning", "num_layers": 2, "num_heads": 4,
                                               "max_length": 16, "dropout": 0.0}]
    return _spec("mm-clip-tiny", objectives=spec["objectives"])


SPECS = {
    "clip": lambda: _spec("mm-clip-tiny"),
    "siglip": lambda: _spec("mm-siglip-tiny"),
    "vilbert": lambda: _spec("mm-vilbert-tiny"),
    "albef": lambda: _spec("mm-albef-tiny"),
    "captioning": _captioning_spec,
}
ANSWERS = ["yes", "no", "red", "blue", "two"]


class MmzooModelTester:
    """Configs and inputs for ModelTesterMixin: ``batch_size`` pairs of (text, image)."""

    def __init__(self, parent, kind: str, answer_vocab=None, batch_size: int = 3, seq_length: int = 7):
        self.parent, self.kind = parent, kind
        self.batch_size, self.seq_length = batch_size, seq_length
        self.answer_vocab = answer_vocab
        self.is_training = True
        config = self.get_config()
        text = config.text_config
        self.vocab_size, self.hidden_size = text.vocab_size, text.hidden_size
        self.num_hidden_layers, self.num_attention_heads = text.num_hidden_layers, text.num_attention_heads
        self.image_size = config.vision_config.image_size
        self.text_config, self.vision_config = config.text_config, config.vision_config

    def get_config(self) -> MmzooConfig:
        return build_config(SPECS[self.kind](), answer_vocab=self.answer_vocab)

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        tokens = config.tokens
        g = torch.Generator().manual_seed(0)
        first = max(tokens["special_token_ids"]) + 1
        input_ids = torch.randint(first, config.text_config.vocab_size, (self.batch_size, self.seq_length), generator=g)
        input_ids[:, 0] = tokens["cls_token_id"]
        attention_mask = torch.ones_like(input_ids)
        attention_mask[0, -2:] = 0  # one padded row
        input_ids[0, -3] = tokens["sep_token_id"]
        input_ids[0, -2:] = tokens["pad_token_id"]
        input_ids[1:, -1] = tokens["sep_token_id"]
        size = config.vision_config.image_size
        pixel_values = torch.randn(self.batch_size, 3, size, size, generator=g)
        return config, {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}


# Skips justified for a composite vision-text model, each with its reason (transformers' CLIP/SigLIP/BLIP tests
# skip the same ones for the same reasons).
COMPOSITE_SKIPS = {
    "test_hidden_states_output": "composite model: the towers' hidden states live in text_model_output / "
                                 "vision_model_output (as CLIP's); they are checked in test_tower_outputs_on_request",
    "test_attention_outputs": "composite model: the towers' attentions live in text_model_output / "
                              "vision_model_output (as CLIP's); checked in test_tower_outputs_on_request",
    "test_retain_grad_hidden_states_attentions": "composite model: no top-level hidden_states/attentions (as CLIP's)",
    "test_inputs_embeds": "mmzoo models take input_ids and pixel_values; inputs_embeds is not an input (as CLIP's)",
    "test_inputs_embeds_matches_input_ids": "no inputs_embeds input (as CLIP's)",
    "test_model_get_set_embeddings": "composite model: no output embeddings (it has no LM head over the tower "
                                     "vocabulary); input embeddings are tested in test_engine_ready.py",
    "test_torch_exportable": "the sdist ships no ExportTesterMixin (tests/exporters is absent); its stand-in is empty",
    "test_generation_tester_mixin_inheritance": "the sdist ships no GenerationTesterMixin (tests/generation is "
                                                "absent); generate() is tested by test_generate_* here",
}


def _skip(reason: str):
    def test(self):
        self.skipTest(reason)

    return test


class _ContractTest(ModelTesterMixin):
    kind = "clip"
    answer_vocab = None
    model_classes: tuple = ()
    additional_model_inputs = ["pixel_values"]  # for the eager-vs-sdpa test: image and text together
    test_resize_embeddings = False  # the MLM head and the caption decoder have their own vocabulary tables
    test_torchscript = False
    test_pruning = False
    _is_composite = True

    def setUp(self):
        self.model_tester = MmzooModelTester(self, self.kind, self.answer_vocab)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        """With ``return_labels``, what makes each class compute its loss: ``return_loss`` for the models whose
        forward is MmzooModel's, soft answer scores for VQA, the captions themselves for captioning."""
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        if return_labels:
            batch = inputs["input_ids"].shape[0]
            if issubclass(model_class, MmzooForVisualQuestionAnswering):
                inputs["labels"] = torch.zeros(batch, len(self.answer_vocab)).index_fill_(1, torch.tensor([0]), 1.0)
            elif issubclass(model_class, MmzooForConditionalGeneration):
                inputs["labels"] = inputs["input_ids"].clone()
            else:
                inputs["return_loss"] = True
        return inputs

    @property
    def all_model_classes(self):
        config_class = type(self.model_tester.get_config())
        return tuple(model_class_for(cls, config_class) for cls in self.model_classes)

    @property
    def all_generative_model_classes(self):
        # GenerationTesterMixin is absent from the sdist (see COMPOSITE_SKIPS); generate() is tested below
        return ()

    for _name, _reason in COMPOSITE_SKIPS.items():
        locals()[_name] = _skip(_reason)
    del _name, _reason

    def test_tower_outputs_on_request(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            if model_class.forward.__code__ is not MmzooModel.forward.__code__:
                continue
            model = model_class(config).eval()
            model.set_attn_implementation("eager")  # SDPA attention returns no attention weights
            with torch.no_grad():
                out = model(**inputs, output_hidden_states=True, output_attentions=True)
            layers = config.text_config.num_hidden_layers
            assert len(out.text_model_output.hidden_states) == layers + 1
            assert len(out.vision_model_output.attentions) == config.vision_config.num_hidden_layers
            features = model.get_text_features(inputs["input_ids"], inputs["attention_mask"],
                                               output_hidden_states=True)
            assert len(features.hidden_states) == layers + 1
            torch.testing.assert_close(torch.nn.functional.normalize(features.pooler_output, dim=-1),
                                       out.text_embeds)

    def test_config(self):
        config = self.model_tester.get_config()
        # the keyword arguments a saved config.json gives (sub-configs as their serialized diffs)
        saved = json.loads(config.to_json_string())
        kwargs = {k: saved[k] for k in ("spec", "tokens", "answer_vocab", "text_config", "vision_config") if k in saved}
        tester = ConfigTester(self, config_class=type(config), has_text_modality=False, common_properties=[], **kwargs)
        # spec and text/vision configs are required (a config without them describes no model)
        tester.run_common_tests(can_init_without_params=False)



class DualEncoderContractTest(_ContractTest, unittest.TestCase):
    kind = "clip"
    model_classes = (MmzooModel,)


class ZeroShotHeadContractTest(_ContractTest, unittest.TestCase):
    kind = "clip"
    model_classes = (MmzooForZeroShotImageClassification,)


class SigmoidContractTest(_ContractTest, unittest.TestCase):
    kind = "siglip"
    model_classes = (MmzooModel, MmzooForZeroShotImageClassification)


class CoAttentionContractTest(_ContractTest, unittest.TestCase):
    kind = "vilbert"
    model_classes = (MmzooModel,)


class CrossAttentionContractTest(_ContractTest, unittest.TestCase):
    kind = "albef"
    model_classes = (MmzooModel,)


class VqaHeadContractTest(_ContractTest, unittest.TestCase):
    kind = "albef"
    answer_vocab = ANSWERS
    model_classes = (MmzooForVisualQuestionAnswering,)
    # The head fine-tunes towers + fusion on the VQA loss; the pretraining objectives' heads, the projections and
    # the temperature it carries over from a pretraining checkpoint are outside that loss, so the head freezes
    # them (MmzooForVisualQuestionAnswering.unreached_modules) and every trainable parameter gets a gradient.


CHECKPOINTING_FIRST_LAYER = (
    "the mixin checks the first GradientCheckpointingLayer in module order, the text tower's; the captioning "
    "head's forward runs the vision tower and mmzoo's caption decoder only, so that layer never runs. "
    "Checkpointing of the decoder layers is checked by test_decoder_gradient_checkpointing"
)


class CaptioningContractTest(_ContractTest, unittest.TestCase):
    kind = "captioning"
    model_classes = (MmzooForConditionalGeneration,)
    test_training_gradient_checkpointing = _skip(CHECKPOINTING_FIRST_LAYER)
    test_training_gradient_checkpointing_use_reentrant_false = _skip(CHECKPOINTING_FIRST_LAYER)
    test_training_gradient_checkpointing_use_reentrant_true = _skip(CHECKPOINTING_FIRST_LAYER)

    def test_decoder_gradient_checkpointing(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        inputs = self._prepare_for_class(inputs, MmzooForConditionalGeneration, return_labels=True)
        model = MmzooForConditionalGeneration(config).train()
        model(**inputs).loss.backward()
        plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        calls = []  # the checkpointed forward runs the layer's feed-forward twice: forward, recomputation
        model.caption_decoder.layers[0].ffn.register_forward_pre_hook(lambda *_: calls.append(1))
        model(**inputs).loss.backward()
        assert len(calls) == 2
        got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert got.keys() == plain.keys() and any("caption" in n or "objectives" in n for n in got)
        for name in plain:
            torch.testing.assert_close(got[name], plain[name], msg=name)

    def test_generate_greedy_matches_step_by_step_argmax(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = MmzooForConditionalGeneration(config).eval()
        start = torch.full((2, 1), config.tokens["cls_token_id"])
        pixels = inputs["pixel_values"][:2]
        with torch.no_grad():
            generated = model.generate(input_ids=start, pixel_values=pixels, max_new_tokens=4, do_sample=False,
                                       eos_token_id=None)
            ids = start
            for _ in range(4):
                logits = model(input_ids=ids, pixel_values=pixels).logits
                ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        assert torch.equal(generated, ids)
