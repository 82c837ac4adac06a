"""The YAML reader of recipes and specs: ``yaml.SafeLoader`` that refuses duplicate keys and excessive
aliasing (a "billion laughs" document), plus size and encoding checks for files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 1_000_000  # recipes and specs are a few KB; anything this large is not one
MAX_NODES = 100_000  # nodes after expanding aliases


class YamlInputError(ValueError):
    """Raised with a message that names the source and the fix (callers wrap it in their error class)."""


class StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader + duplicate-key and alias-expansion checks."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hashable = hash(key) is not None
                except TypeError:
                    hashable = False
                if hashable and key in seen:
                    first = seen[key].start_mark.line + 1
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first}); keep only one of them",
                        key_node.start_mark,
                    )
                if hashable:
                    seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node, memo: dict[int, int], limit: int) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # cycles (recursive aliases) count once
    if isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_size(k, memo, limit) + _expanded_size(v, memo, limit) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(v, memo, limit) for v in node.value)
    else:
        total = 1
    memo[key] = min(total, limit + 1)
    return memo[key]


def load_yaml(text: str, source: str = "<yaml>") -> Any:
    """Parse ``text`` strictly; ``YamlInputError`` naming ``source`` on any problem."""
    if len(text) > MAX_FILE_BYTES:
        raise YamlInputError(f"{source}: {len(text):,} characters, more than the {MAX_FILE_BYTES:,} a recipe or spec "
                             "may have; is this the right file?")
    loader = StrictSafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, MAX_NODES) > MAX_NODES:
            raise YamlInputError(f"{source}: its aliases (&anchor / *alias) expand to more than {MAX_NODES:,} "
                                 "values; refusing to load it (write the values out, or use fewer aliases)")
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise YamlInputError(f"{source}: not valid YAML: {_short(err)}") from None
    finally:
        loader.dispose()


def read_text_file(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``, refusing files over the size limit or not in UTF-8."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise YamlInputError(f"{path}: {size:,} bytes, more than the {MAX_FILE_BYTES:,} a {what} may have; is this "
                             "the right file?")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise YamlInputError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}, offset {err.start}); save the "
            f"{what} as UTF-8"
        ) from None


def load_yaml_file(path: str | Path, what: str = "file") -> Any:
    return load_yaml(read_text_file(path, what), str(path))


def _short(err: yaml.YAMLError) -> str:
    text = str(err)
    return text if len(text) <= 500 else text[:500] + "... (truncated)"
