"""Every spec tag has a module behind it, and registries behave (close-match errors, no silent overwrite)."""

from __future__ import annotations

import pytest

import mmzoo
from mmzoo._registry import Registry
from mmzoo.errors import UnknownComponentError
from mmzoo.fusion import FUSIONS
from mmzoo.objectives import OBJECTIVES
from mmzoo.specs import FUSION_SPECS, OBJECTIVE_SPECS


def test_every_spec_tag_has_a_module():
    assert FUSION_SPECS.list() == FUSIONS.list()
    assert OBJECTIVE_SPECS.list() == OBJECTIVES.list()


def test_one_entry_per_tag_holds_spec_builder_and_capabilities():
    from mmzoo.specs.fusion import FUSION_COMPONENTS
    from mmzoo.specs.objectives import OBJECTIVE_COMPONENTS

    entry = FUSION_COMPONENTS.entry("co_attention")
    assert entry.spec is FUSION_SPECS.get("co_attention") and entry.builder is FUSIONS.get("co_attention")
    assert "pair_embedding" in entry.spec.provides  # capabilities are declared on the entry's spec class
    assert OBJECTIVE_COMPONENTS.entry("sigmoid").spec.pair_scores == "sigmoid"
    assert OBJECTIVE_COMPONENTS.entry("contrastive").builder is OBJECTIVES.get("contrastive")


def test_a_builder_needs_a_registered_spec():
    with pytest.raises(ValueError, match="no spec class; register its spec first"):
        FUSIONS.register("not_a_spec_tag")(object)
    assert "not_a_spec_tag" not in FUSIONS


def test_unknown_tag_suggests_close_match():
    with pytest.raises(UnknownComponentError, match="did you mean 'co_attention'"):
        FUSIONS.get("coattention")


def test_reregistering_needs_override():
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    reg.register("a", 2, override=True)
    assert reg.get("a") == 2


def test_list_components():
    kinds = mmzoo.list_components()
    assert "co_attention" in kinds["fusion"] and "sigmoid" in kinds["objective"]
    assert "mm-vilbert-tiny" in mmzoo.list_components("preset")
    with pytest.raises(ValueError, match="unknown component kind"):
        mmzoo.list_components("nope")


def test_unknown_preset_lists_presets():
    with pytest.raises(UnknownComponentError, match="mm-clip-tiny"):
        mmzoo.load_spec("mm-clip-tinyy")
