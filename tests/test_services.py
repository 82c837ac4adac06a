"""Services that lower layers use and higher layers own are provided by `import mmzoo` (so training and adapter
loading import neither mmzoo.eval, mmzoo.hub nor mmzoo.builder; tests/test_layering.py checks the imports)."""

from __future__ import annotations

import pytest

import mmzoo  # noqa: F401  (provides the services)
from mmzoo.utils.services import service


def test_the_standard_services_are_the_owners_functions():
    from mmzoo.builder import build_model
    from mmzoo.eval import run_evaluation
    from mmzoo.hub.pictures import write_pictures
    from mmzoo.hub.push import publish_run

    assert service("evaluate") is run_evaluation and service("publish") is publish_run
    assert service("illustrate") is write_pictures and service("build_model") is build_model
    from mmzoo.data.vqa_v2 import normalize_answer

    assert service("vqa_answer_normalizer")("Two dogs.") == normalize_answer("Two dogs.") == "2 dogs"


def test_an_unknown_service_is_a_clear_error():
    with pytest.raises(LookupError, match="no 'evaluat' service is provided.*pass the callable explicitly"):
        service("evaluat")
