"""``training.precision: auto``: bf16 autocast where it is measurably faster for this model on this machine, else fp32.

The choice, in order:

1. The hardware must run bf16 fast: a CUDA GPU with bf16 support, or a CPU with AVX512-BF16 or AMX (the
   ``avx512_bf16`` / ``amx_bf16`` flags of ``/proc/cpuinfo``). Otherwise fp32 (TF32 matmuls on a GPU).
2. A short calibration on the actual model and one real training batch: ``steps`` timed forward + backward
   passes in fp32 and under bf16 autocast, interleaved (fp32, bf16, fp32, ...) after one warm-up each; bf16 is
   chosen when its median step is at least ``min_speedup`` (1.05) times faster. Small models are often slower in
   bf16 on a CPU (the casts cost more than the narrower matmuls save), large ones up to ~2x faster.

The calibration leaves no trace on training: no optimizer step, gradients cleared, the RNG states (CPU and CUDA)
restored, the module's train/eval mode restored. With several processes (``WORLD_SIZE > 1``) every rank must
agree without a process group yet, so the hardware rule alone decides there (recorded as such).

The choice and its measurements are logged and written to ``<output_dir>/precision.json``
(:data:`PRECISION_FILE`) for the model card.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..utils.logging import get_logger

logger = get_logger(__name__)

PRECISION_FILE = "precision.json"
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


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

    def summary(self) -> str:
        timing = ""
        if self.seconds_per_step:
            timing = (f" (calibration: fp32 {self.seconds_per_step['fp32']:.3f} s/step, bf16 "
                      f"{self.seconds_per_step['bf16']:.3f} s/step, bf16 speedup {self.speedup_bf16:.2f}x)")
        return f"precision: {self.requested} -> {self.precision}: {self.reason}{timing}"


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
    """Seconds per forward + backward step of ``model`` on ``batch`` in fp32 and under bf16 autocast,
    interleaved, after one warm-up step each. Leaves the model, its gradients and the RNGs as they were."""
    import torch

    device = next(model.parameters()).device
    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    was_training = model.training
    model.train()
    grads = {name: p.grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = None  # a backward pass would accumulate into the saved gradients

    def step(precision: str) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            outputs = model(**{"return_loss": True, **batch})
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs.loss
        loss.float().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        for p in model.parameters():
            p.grad = None
        return seconds

    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    try:
        step("fp32"), step("bf16")  # warm-up: kernels, allocator, autocast caches
        for _ in range(steps):
            for precision in times:
                times[precision].append(step(precision))
    finally:
        for name, p in model.named_parameters():
            p.grad = grads[name]
        model.train(was_training)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    return times


def choose_precision(requested: str, model=None, batch: dict[str, Any] | None = None, *, steps: int = 3,
                     min_speedup: float = 1.05) -> PrecisionChoice:
    """Resolve ``requested`` (``auto``, ``fp32``, ``bf16``, ``fp16``); only ``auto`` measures anything."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if requested != "auto":
        return PrecisionChoice(requested, requested, "set in the recipe", device, fast_bf16_hardware(device)[0])
    fast, why = fast_bf16_hardware(device)
    if not fast:
        return PrecisionChoice("fp32", "auto", why, device, False)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return PrecisionChoice("bf16", "auto", f"{why}; several processes: chosen by the hardware alone, "
                               "without calibration", device, True)
    if model is None or batch is None:
        return PrecisionChoice("fp32", "auto", f"{why}, but no batch to calibrate on (streamed data); set "
                               "precision: bf16 to use it", device, True)
    times = calibrate(model, batch, steps)
    medians = {k: statistics.median(v) for k, v in times.items()}
    speedup = medians["fp32"] / medians["bf16"]
    chosen = "bf16" if speedup >= min_speedup else "fp32"
    verdict = "faster" if chosen == "bf16" else f"not faster by {min_speedup:.2f}x or more"
    return PrecisionChoice(chosen, "auto", f"{why}; bf16 autocast measured {verdict} on this model",
                           device, True, medians, times, speedup)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(choice), indent=2) + "\n")
    return path


def read_choice(output_dir: str | Path) -> PrecisionChoice | None:
    """The choice written by an earlier run into ``output_dir`` (``None`` when absent or unreadable)."""
    try:
        data = json.loads((Path(output_dir) / PRECISION_FILE).read_text())
        return PrecisionChoice(**data)
    except (OSError, ValueError, TypeError):
        return None
