"""Every fusion x objective pair from the registries: valid pairs build, backpropagate and overfit 8 examples;
invalid pairs are rejected by the spec with a message naming the rule.

Valid means ``objective.requires <= fusion.provides``; a fusion's ``needs_objective`` (adversarial, distillation)
is added alongside. Each run is a few dozen AdamW steps (lr 1e-3) on 8 fixed pairs; the objective's loss must
fall (mean of the last 3 steps below 97% of the first 3).
"""

from __future__ import annotations

import pytest
import torch

import mmzoo
from mmzoo.errors import SpecError
from mmzoo.specs.fusion import FUSION_SPECS
from mmzoo.specs.objectives import OBJECTIVE_SPECS
from tests.common import images
from tests.objectives.helpers import tiny_spec, tiny_spec_dict

CAPTIONS = [
    "a large red circle at the top left", "a small blue square in the center", "a green triangle at the bottom right",
    "two yellow circles", "a purple star above a white square", "three small orange triangles",
    "a black dog next to a tree", "one pink rectangle at the right",
]
STEPS = 30
FALL = 0.97
# objective variants beyond the registry defaults
VARIANTS = {"distillation": [{"type": "distillation", "loss": "cosine"}]}


def _fits(fusion: str, objective: str) -> bool:
    return OBJECTIVE_SPECS.get(objective).requires <= FUSION_SPECS.get(fusion).provides


FUSIONS = [tag for tag, _ in FUSION_SPECS.items()]
OBJECTIVES = [tag for tag, _ in OBJECTIVE_SPECS.items()]
VALID = [(f, o) for f in FUSIONS for o in OBJECTIVES if _fits(f, o)]
VALID += [(f, v) for f, o in list(VALID) for v in VARIANTS.get(o, [])]
INVALID = [(f, o) for f in FUSIONS for o in OBJECTIVES if not _fits(f, o)]
MISSING_PARTNER = [
    (f, o) for f in FUSIONS for o in OBJECTIVES
    if FUSION_SPECS.get(f).needs_objective not in (None, o) and _fits(f, o)
]


def _id(value) -> str:
    return value if isinstance(value, str) else "-".join(f"{k}={v}" for k, v in value.items() if k != "type") or "x"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread avoids oversubscription on a busy machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def processor():
    return mmzoo.build_processor(tiny_spec("dual_encoder", ["contrastive"]))


@pytest.fixture(scope="module")
def batch(processor):
    return dict(processor(text=CAPTIONS, images=images(8)))


def objectives_for(fusion: str, objective) -> list:
    """The objective plus what the fusion needs trained alongside it."""
    partner = FUSION_SPECS.get(fusion).needs_objective
    tag = objective if isinstance(objective, str) else objective["type"]
    return [objective] + ([partner] if partner and partner != tag else [])


@pytest.mark.parametrize(("fusion", "objective"), VALID, ids=[f"{f}+{_id(o)}" for f, o in VALID])
def test_valid_combination_trains(fusion, objective, batch):
    tag = objective if isinstance(objective, str) else objective["type"]
    torch.manual_seed(0)
    model = mmzoo.build_model(tiny_spec_dict(fusion, objectives_for(fusion, objective))).train()
    if tag == "adversarial":
        # a minimax game: with the towers free, gradient reversal pushes the discriminator's loss back up, so
        # check the discriminator can learn the modalities when the towers cannot fight back
        model.text_tower.requires_grad_(False)
        model.vision_tower.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(STEPS):
        out = model(**batch, return_loss=True)
        assert all(term.isfinite() for term in out.loss_terms.values()), out.loss_terms
        optimizer.zero_grad()
        out.loss.backward()
        if step == 0:  # forward + backward reach every parameter of the objective
            params = dict(model.objectives[tag].named_parameters())
            assert all(p.grad is not None for p in params.values()), [n for n, p in params.items() if p.grad is None]
            towers = [*model.text_tower.parameters(), *model.vision_tower.parameters()]
            assert tag == "adversarial" or any(p.grad is not None and p.grad.abs().sum() > 0 for p in towers)
        optimizer.step()
        losses.append(out.loss_terms[tag].item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < FALL * first, f"{tag} loss did not fall with fusion {fusion}: {first:.4f} -> {last:.4f}"


@pytest.mark.parametrize(("fusion", "objective"), INVALID, ids=[f"{f}+{o}" for f, o in INVALID])
def test_objective_without_the_capability_is_rejected(fusion, objective):
    lacking = OBJECTIVE_SPECS.get(objective).requires - FUSION_SPECS.get(fusion).provides
    with pytest.raises(SpecError) as info:
        tiny_spec(fusion, objectives_for(fusion, objective))
    message = str(info.value)
    assert f"objective {objective!r} needs a fusion that provides" in message
    assert all(capability in message for capability in lacking)
    assert f"fusion.type {fusion!r} does not" in message


@pytest.mark.parametrize(("fusion", "objective"), MISSING_PARTNER, ids=[f"{f}+{o}" for f, o in MISSING_PARTNER])
def test_fusion_without_its_objective_is_rejected(fusion, objective):
    partner = FUSION_SPECS.get(fusion).needs_objective
    with pytest.raises(SpecError, match=f"only the {partner!r} objective trains"):
        tiny_spec(fusion, [objective])


def test_registries_are_covered():
    assert len(VALID) + len(INVALID) == len(FUSIONS) * len(OBJECTIVES) + sum(
        len(VARIANTS.get(o, [])) for f, o in VALID if isinstance(o, str)
    )
    assert {o for _, o in VALID if isinstance(o, str)} == set(OBJECTIVES)  # every objective has a fusion
    assert {f for f, _ in VALID} == set(FUSIONS)
