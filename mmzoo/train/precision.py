"""``training.precision: auto``: bf16 autocast where it is measurably faster for this model on this machine, else fp32.

The choice, in order:

1. The hardware must run bf16 fast: a CUDA GPU with bf16 support, or a CPU with AVX512-BF16 or AMX (the
   ``avx512_bf16`` / ``amx_bf16`` flags of ``/proc/cpuinfo``). Otherwise fp32 (TF32 matmuls on a GPU).
2. A short calibration on the actual model and one real training batch of the per-device size: ``steps`` timed
   training steps (forward, backward, fused AdamW, on a copy of the model) in fp32 and under bf16 autocast,
   interleaved (fp32, bf16, fp32, ...) after one warm-up each; bf16 is chosen when the median of the paired
   ratios shows it at least ``min_speedup`` (:data:`MIN_SPEEDUP`, 1.10) times faster. Small
   models are often slower in bf16 on a CPU (the casts cost more than the narrower matmuls save), large ones up
   to ~2x faster.

bf16 on a CPU runs attention with the "eager" implementation (:data:`BF16_ATTENTION`), in the calibration and in
training: PyTorch's CPU SDPA (flash-attention) kernel takes ~3x longer for its backward in bf16 than in fp32
(measured on the batch-256 bench model: 639 vs 200 ms per step), while eager attention's bf16 matmuls are fast
(bench model: bf16 2.07x fp32 with eager attention, 1.38x with SDPA; ``bench/step_modes.py``). The saved model keeps
its own attention implementation (``_attn_implementation`` is not part of ``config.json``).

One run, one precision, whatever the number of processes:

* Only global rank 0 calibrates (the others wait); its choice is broadcast, so every rank trains alike. The
  batch is the per-device one, the same for 1 or N processes.
* The first measurement is kept: the choice is cached under ``$MMZOO_CACHE/precision/`` (default
  ``~/.cache/mmzoo``) keyed by the model's configuration, the batch's shapes, the hardware and the torch
  version, and reused by every later run of that key on this machine (idle or loaded, 1 or N processes).
  Delete the file named in the log to measure again.
* A resumed run keeps the choice recorded in its run folder.

The calibration leaves no trace on training: it steps a copy of the model with an optimizer of its own (for its
few seconds, one more model and its AdamW state in memory), and the RNG states (CPU and CUDA) are restored. On
rank 0 under torchrun the losses run as in one process (no cross-rank gather: the other ranks are waiting).

The choice, its measurements and its key are logged and written to ``<output_dir>/precision.json``
(:data:`PRECISION_FILE`), which the model card reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..utils.logging import get_logger

logger = get_logger(__name__)

PRECISION_FILE = "precision.json"
CACHE_FOLDER = "precision"  # under mmzoo's cache root ($MMZOO_CACHE)
MIN_SPEEDUP = 1.10  # margin against timing noise on a shared machine
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# attention implementation used under bf16 autocast, per device type, where the default (SDPA) is the slower one
BF16_ATTENTION = {"cpu": "eager"}
CALIBRATION_METHOD = "bf16-attention-per-device-1"  # in the cache key: a change of method measures again


@dataclass
class PrecisionChoice:
    """What ``precision: auto`` chose (``precision`` is ``"bf16"`` or ``"fp32"``) and why."""

    precision: str
    requested: str
    reason: str
    device: str
    hardware_bf16: bool
    seconds_per_step: dict[str, float] = field(default_factory=dict)  # median over the calibration steps
    all_steps: dict[str, list[float]] = field(default_factory=dict)
    speedup_bf16: float | None = None
    key: dict[str, Any] = field(default_factory=dict)  # what the measurement holds for (calibration_key)
    measured_at: str | None = None  # UTC time of the calibration
    cached_from: str | None = None  # the machine's cache file the measurement was reused from (delete: remeasure)

    def summary(self) -> str:
        timing = ""
        if self.seconds_per_step:
            timing = (f" (calibration: fp32 {self.seconds_per_step['fp32']:.3f} s/step, bf16 "
                      f"{self.seconds_per_step['bf16']:.3f} s/step, bf16 speedup {self.speedup_bf16:.2f}x)")
        reused = f"; from {self.cached_from} (delete it to measure again)" if self.cached_from else ""
        return f"precision: {self.requested} -> {self.precision}: {self.reason}{timing}{reused}"


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The fast-bf16 flags of this CPU (``avx512_bf16``, ``amx_bf16``) found in ``/proc/cpuinfo``."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return [flag for flag in _CPU_BF16_FLAGS if flag in flags]


def hardware_name(device_type: str) -> str:
    """The accelerator or CPU a measurement holds for: the CUDA device's name, or the CPU's model name, core
    count and fast-bf16 flags."""
    import torch

    if device_type == "cuda":
        return f"cuda:{torch.cuda.get_device_name()}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[-1].strip()
                break
    except OSError:
        pass
    return f"cpu:{model} x{os.cpu_count()} {'/'.join(cpu_bf16_flags()) or 'no-fast-bf16'}"


def calibration_key(model, batch: dict[str, Any], device_type: str) -> dict[str, Any]:
    """What a calibration's result depends on: the model's configuration (hashed), the batch's tensor shapes and
    dtypes (for token tensors the batch size only: their padded length varies with the data and the seed), the
    hardware and the torch version. Not the world size nor the thread count, so that 1 and N processes share one
    decision."""
    import torch

    config = model.config.to_dict() if hasattr(getattr(model, "config", None), "to_dict") else {"module": repr(model)}
    for volatile in ("transformers_version", "_name_or_path", "_commit_hash"):
        config.pop(volatile, None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    # token tensors: their padded length follows the batch's longest text (the data, the seed): batch size only
    shapes = {k: [list(v.shape) if v.is_floating_point() else list(v.shape[:1]), str(v.dtype).removeprefix("torch.")]
              for k, v in sorted(batch.items()) if isinstance(v, torch.Tensor)}
    return {"model": digest, "batch": shapes, "hardware": hardware_name(device_type), "torch": torch.__version__,
            "method": CALIBRATION_METHOD}


def attention_for(precision: str, device_type: str) -> str | None:
    """The attention implementation training in ``precision`` on ``device_type`` uses instead of the model's own,
    or None (keep the model's)."""
    return BF16_ATTENTION.get(device_type) if precision == "bf16" else None


def use_precision_attention(model, precision: str) -> str | None:
    """Switch ``model`` (any ``PreTrainedModel``; towers and mmzoo's own layers follow) to the attention
    implementation of :func:`attention_for`; returns it, or None when nothing changed."""
    device = next(model.parameters()).device.type
    implementation = attention_for(precision, device)
    if implementation is None or _attention_of(model) in (None, implementation):
        return None
    model.set_attn_implementation(implementation)
    return implementation


def _attention_of(model) -> str | None:
    """A transformers model's attention implementation; None for other modules."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None)


def cache_path(key: dict[str, Any], cache_dir: str | Path) -> Path:
    blob = json.dumps(key, sort_keys=True).encode()
    return Path(cache_dir) / f"{key['model']}-{hashlib.sha256(blob).hexdigest()[:16]}.json"


def default_cache_dir() -> Path:
    from ..data._cache import cache_root

    return cache_root() / CACHE_FOLDER


def fast_bf16_hardware(device_type: str) -> tuple[bool, str]:
    """``(supported, why)`` for bf16 autocast on ``device_type`` (``"cuda"`` or ``"cpu"``)."""
    import torch

    if device_type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return True, f"CUDA device {torch.cuda.get_device_name()} supports bf16"
        return False, "the CUDA device has no bf16 support"
    flags = cpu_bf16_flags()
    if flags:
        return True, f"the CPU has {'/'.join(flags)}"
    return False, "the CPU has neither AVX512-BF16 nor AMX, so bf16 would be emulated (slow)"


def calibrate(model, batch: dict[str, Any], steps: int = 3) -> dict[str, list[float]]:
    """Seconds per training step (forward, loss, backward, fused AdamW step, zero_grad: the Trainer's default
    step) on ``batch`` in fp32 and under bf16 autocast (with :func:`attention_for`'s attention), interleaved, after
    one warm-up step each. The steps run
    on a copy of ``model`` with an optimizer of its own, so the model, its gradients and its mode are untouched;
    the RNG states (CPU and CUDA) are restored."""
    import copy

    import torch

    from ..losses._distributed import single_process

    device = next(model.parameters()).device
    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    twin = copy.deepcopy(model).train()
    params = [p for p in twin.parameters() if p.requires_grad]
    for p in twin.parameters():
        p.grad = None  # the copy carries the model's gradients: a backward pass would accumulate into them
    try:
        optimizer = torch.optim.AdamW(params, lr=1e-8, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device / dtype
        optimizer = torch.optim.AdamW(params, lr=1e-8)

    own_attention = _attention_of(twin)

    def step(precision: str) -> float:
        # each precision with the attention it would train with (see BF16_ATTENTION)
        attention = attention_for(precision, device.type) or own_attention
        if own_attention is not None and _attention_of(twin) != attention:
            twin.set_attn_implementation(attention)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        # single_process: the other ranks are not calibrating, so the loss must not gather across ranks
        with single_process(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            outputs = twin(**{"return_loss": True, **batch})
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs.loss
        loss.float().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    try:
        step("fp32"), step("bf16")  # warm-up: kernels, allocator, autocast caches, optimizer state
        for _ in range(steps):
            for precision in times:
                times[precision].append(step(precision))
    finally:
        del twin, optimizer, params
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    return times


def bf16_speedup(times: dict[str, list[float]]) -> float:
    """fp32 over bf16 seconds: the median of the paired (back-to-back) ratios, robust to load that drifts
    between pairs."""
    return statistics.median(f / b for f, b in zip(times["fp32"], times["bf16"]))


def choose_precision(requested: str, model=None, batch: dict[str, Any] | None = None, *, steps: int = 3,
                     min_speedup: float = MIN_SPEEDUP, cache_dir: str | Path | None = None) -> PrecisionChoice:
    """Resolve ``requested`` (``auto``, ``fp32``, ``bf16``, ``fp16``); only ``auto`` measures anything, and only
    when ``cache_dir`` holds no earlier measurement of the same :func:`calibration_key` (then it stores one)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if requested != "auto":
        return PrecisionChoice(requested, requested, "set in the recipe", device, fast_bf16_hardware(device)[0])
    fast, why = fast_bf16_hardware(device)
    if not fast:
        return PrecisionChoice("fp32", "auto", why, device, False)
    if model is None or batch is None:
        return PrecisionChoice("fp32", "auto", f"{why}, but no batch to calibrate on (streamed data); set "
                               "precision: bf16 to use it", device, True)
    key = calibration_key(model, batch, device)
    path = cache_path(key, cache_dir) if cache_dir is not None else None
    if path is not None and (cached := _read(path)) is not None and cached.key == key:
        return replace(cached, reason=f"{cached.reason} (measured at {cached.measured_at} for this model, batch "
                       "shape and hardware, reused)", cached_from=str(path))
    times = calibrate(model, batch, steps)
    medians = {k: statistics.median(v) for k, v in times.items()}
    speedup = bf16_speedup(times)
    chosen = "bf16" if speedup >= min_speedup else "fp32"
    verdict = "faster" if chosen == "bf16" else f"not faster by {min_speedup:.2f}x or more"
    choice = PrecisionChoice(chosen, "auto", f"{why}; bf16 autocast measured {verdict} on this model", device,
                             True, medians, times, speedup, key, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if path is not None:
        _write(choice, path)
        logger.info("precision: auto: measurement cached in %s (delete it to measure again)", path)
    return choice


def shared_choice(decide: Callable[[], PrecisionChoice]) -> PrecisionChoice:
    """``decide()`` on global rank 0 only, its result broadcast to every rank (when a process group is
    initialised): all ranks train in the precision rank 0 chose, and only rank 0 spends the calibration."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return decide()
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box = [("ok", asdict(decide()))]
        except Exception as err:  # the others must not wait for a choice that never comes
            box = [("error", f"{type(err).__name__}: {err}")]
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    status, payload = box[0]
    if status == "error":
        raise RuntimeError(f"precision: auto: the calibration failed on rank 0 ({payload})")
    return PrecisionChoice(**payload)


def calibration_batch(dataset, collator, batch_size: int) -> dict[str, Any] | None:
    """One collated training batch: the first ``batch_size`` rows of ``dataset`` (map-style or iterable);
    ``None`` when the dataset yields nothing or its rows fail with mmzoo's own error (training then reports that
    error itself, where its message belongs)."""
    from ..errors import MmzooError

    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        # a stream: reading ahead would count its bad rows twice in the skip report (and may be slow)
        logger.info("precision: auto: streamed training data, no calibration batch")
        return None
    try:
        rows = [dataset[i] for i in range(min(batch_size, len(dataset)))]
    except MmzooError as err:
        logger.info("precision: auto: no calibration batch (%s)", err)
        return None
    return collator(rows) if rows else None


def write_choice(choice: PrecisionChoice, output_dir: str | Path) -> Path:
    path = Path(output_dir) / PRECISION_FILE
    _write(choice, path)
    return path


def read_choice(output_dir: str | Path) -> PrecisionChoice | None:
    """The choice written by an earlier run into ``output_dir`` (``None`` when absent or unreadable)."""
    return _read(Path(output_dir) / PRECISION_FILE)


def _write(choice: PrecisionChoice, path: Path) -> None:
    from ._io import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, asdict(choice))


def _read(path: Path) -> PrecisionChoice | None:
    try:
        return PrecisionChoice(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
