"""mmzoo's packaged `evaluate` metric modules, loadable offline.

Each metric is a folder ``<name>/<name>.py`` holding one ``evaluate.Metric``. ``evaluate.load("accuracy")`` needs the
Hub; ``load_metric(name)`` loads the packaged script by local path instead, which needs no network
(``HF_HUB_OFFLINE=1`` is fine). ``evaluate`` copies the script into its modules cache
(``$HF_MODULES_CACHE``, default ``$HF_HOME/modules/evaluate_modules/metrics/<name>/<content hash>/``) and imports it
from there; an unchanged script reuses its cached copy, an edited one gets a new hash folder.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import evaluate

METRICS_DIR = Path(__file__).resolve().parent


def list_metrics() -> list[str]:
    """Names of the packaged metrics, sorted.

    Example:
        >>> "vqa_accuracy" in list_metrics()
        True
    """
    return sorted(path.name for path in METRICS_DIR.iterdir() if (path / f"{path.name}.py").is_file())


def metric_path(name: str) -> Path:
    """Folder of the packaged metric ``name`` (pass it to ``evaluate.load``); raises ``ValueError`` if unknown."""
    known = list_metrics()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown mmzoo metric {name!r}.{hint} Known metrics: {', '.join(known)}.")
    return METRICS_DIR / name


@functools.cache
def metric_module(name: str) -> ModuleType:
    """The packaged metric script ``name`` imported as a plain module, for its helpers (e.g.
    ``metric_module("vqa_accuracy").normalize_answer``), so code outside the metric reuses them instead of
    repeating them."""
    path = metric_path(name) / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"mmzoo_metric_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_metric(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """Load the packaged metric ``name`` with ``evaluate.load`` by local path (no Hub access).

    Args:
        name: one of :func:`list_metrics`.
        **kwargs: forwarded to ``evaluate.load`` (``config_name``, ``keep_in_memory``, ``cache_dir``,
            ``num_process``/``process_id``, ``experiment_id`` ...).

    Example:
        >>> load_metric("zeroshot_accuracy", keep_in_memory=True).compute(
        ...     predictions=[[0.2, 0.8]], references=[1], top_k=(1,))
        {'top1_accuracy': 1.0, 'num_examples': 1}
    """
    path = metric_path(name)
    try:
        import evaluate
    except ImportError as err:  # evaluate is in the [train] extra
        raise ImportError("mmzoo metrics need `evaluate`: run `pip install mmzoo[train]`.") from err
    return evaluate.load(str(path), **kwargs)
