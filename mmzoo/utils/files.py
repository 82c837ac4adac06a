"""Low-level file helpers shared by every layer: the one atomic writer, safetensors checks, disk-full errors
and the fault-injection hook of the crash tests. No torch here."""

from __future__ import annotations

import errno
import json
import os
import signal
import struct
import tempfile
from pathlib import Path
from typing import Any

RUN_INFO = "run_info.json"  # in a run folder: what the run was (steps, samples, losses, hardware); the card reads it
RUN_STATUS = "mmzoo_run.json"  # in a run folder: {"status": "running" | "complete", "files": [...]}
CHECKPOINT_MARKER = "mmzoo_checkpoint.json"  # in a checkpoint folder, written last: {"files": {name: size}}
FAULT_ENV = "MMZOO_FAULT_KILL"  # comma-separated fault points at which the process SIGKILLs itself (tests)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a partial one
    (temporary sibling, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """:func:`atomic_write_text` of ``data`` as indented JSON (tensors/numpy scalars as numbers)."""
    return atomic_write_text(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, default=_jsonable) + "\n" for r in records)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def safetensors_problem(path: str | Path) -> str | None:
    """``None`` when ``path`` is a whole safetensors file (header parses, every tensor's byte range lies
    inside the file and the data section ends where the file ends), else what is wrong with it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{size} bytes, shorter than a safetensors header"
            (length,) = struct.unpack("<Q", head)
            if length > size - 8 or length > 100_000_000:
                return f"header claims {length} bytes but the file has {size} (truncated?)"
            header = json.loads(f.read(length))
    except OSError as err:
        return f"cannot read it ({err.strerror or err})"
    except (ValueError, UnicodeDecodeError) as err:
        return f"header is not valid JSON ({err})"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1]):
            return f"tensor {name!r} has no valid data_offsets"
        end = max(end, offsets[1])
    data = size - 8 - length
    if end != data:
        return f"tensor data needs {end} bytes but the file holds {data} after its header (truncated?)"
    return None


def checkpoint_problem(folder: str | Path) -> str | None:
    """``None`` for a complete checkpoint, else why it cannot be resumed from."""
    folder = Path(folder)
    marker = folder / CHECKPOINT_MARKER
    if not marker.is_file():
        return f"no {CHECKPOINT_MARKER} (its save was interrupted)"
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable {CHECKPOINT_MARKER} ({err})"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} were written"
    for path in folder.glob("*.safetensors"):
        if (problem := safetensors_problem(path)) is not None:
            return f"{path.name}: {problem}"
    return None


def is_disk_full(err: BaseException) -> bool:
    """True for "no space left on device" however it surfaces: ``OSError(ENOSPC)``, torch's zip writer
    (``[enforce fail at inline_container.cc] ... unexpected pos`` / ``file write failed``) or safetensors'
    ``os error 28``."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(err)
        if "No space left on device" in text or "os error 28" in text or (
            "inline_container" in text and ("unexpected pos" in text or "write failed" in text)
        ):
            return True
        err = err.__cause__ or err.__context__
    return False


def fault_point(name: str, step: int | None = None) -> None:
    """Crash-test hook: SIGKILL this process when ``name`` (or ``name@step``) is listed in
    ``$MMZOO_FAULT_KILL``. The points are listed in :mod:`mmzoo.train.checkpoints`."""
    wanted = os.environ.get(FAULT_ENV)
    if wanted and (name in (points := wanted.split(",")) or (step is not None and f"{name}@{step}" in points)):
        os.kill(os.getpid(), signal.SIGKILL)
