"""Publish a run directory to the Hub in ONE commit: weights, config, processor, recipe, metrics and card.

Nothing is half-written on failure: files are staged by the client (preupload/LFS) and become visible only
when the single ``create_commit`` lands. A README edited on the Hub is kept unless ``overwrite_card=True``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import yaml
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalTokenNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..errors import HubError
from ..utils.files import CHECKPOINT_MARKER, RUN_STATUS, checkpoint_problem, safetensors_problem
from ..utils.hub_ids import repo_id_problem
from ..utils.logging import get_logger
from ..version import __version__
from .card import PICTURES, Run, eval_result_files, is_generated_card, load_run, render_card
from .facts import RUN_INFO, default_commit_message
from .remote_code import remote_code_files

logger = get_logger(__name__)
PICTURE_FILES = tuple(file for file, _ in PICTURES)  # loss curve and examples, shown in the card
RESULT_FILES = frozenset({"eval_results.json", RUN_INFO, *PICTURE_FILES})  # true of one set of weights only

# top-level run files that belong on the Hub (checkpoint-*/ folders and training logs never do)
PUSHED_PATTERNS = (
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
    "processor_config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "*.model",
    "chat_template.jinja", "eval_results.json", RUN_INFO, *PICTURE_FILES,
)


# each Hub call is tried this many times on HTTP 429/5xx and dropped connections, with back-off
# RETRY_BASE_DELAY * 2**i seconds between tries (MMZOO_HUB_TRIES / MMZOO_HUB_RETRY_DELAY override them)
TRIES = 5
RETRY_BASE_DELAY = 1.0


@dataclass(frozen=True)
class PushResult:
    """What :func:`push_run` committed."""

    repo_id: str
    revision: str
    commit_url: str
    commit_oid: str
    files: list[str] = field(default_factory=list)
    card_kept: bool = False  # True when an edited README on the Hub was left in place


def push_run(run_dir: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
             commit_message: str | None = None, overwrite_card: bool = False, remote_code: bool = False,
             token: str | None = None, *, license: str | None = None, tags: tuple[str, ...] = ()) -> PushResult:
    """Upload a run directory (``save_pretrained`` output + recipe + eval results) as one commit.

    Args:
        run_dir: folder with ``config.json``, ``model.safetensors``, processor files and optionally
            ``recipe.yaml`` and ``eval_results.json``.
        repo_id: ``namespace/name`` on the Hub; created (``private``) if missing.
        private: visibility of a newly created repo (an existing repo keeps its visibility).
        revision: branch to commit to (e.g. ``step-1000``), created from ``main`` if missing; default ``main``.
        commit_message: default from the run: ``"Upload <run name> (<model>, <N> steps, <M> samples) with mmzoo
            <version>"`` (see :func:`mmzoo.hub.facts.default_commit_message`).
        overwrite_card: replace a README.md that someone edited on the Hub.
        remote_code: also upload mmzoo's modeling code, flattened (see :mod:`mmzoo.hub.remote_code`), and an
            ``auto_map`` in ``config.json``/``processor_config.json``, so that
            ``AutoModel.from_pretrained(repo_id, trust_remote_code=True)`` loads without mmzoo installed.
        token: Hub token; default ``HF_TOKEN`` or the token saved by ``hf auth login``.
        license, tags: card metadata (see :func:`mmzoo.hub.card.render_card`).

    Returns:
        :class:`PushResult` with the commit url/oid and the files committed.

    Raises:
        HubError: no token, repo not found or not writable, invalid card, network or server failure.
    """
    check_repo_id(repo_id)
    verify_run_folder(run_dir)
    run = load_run(run_dir)
    token = token or get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass token=...")
    files = _run_files(run)
    code = remote_code_files(run) if remote_code else {}  # built before any request: a bundling error pushes nothing
    api = HfApi(token=token, library_name="mmzoo", library_version=__version__)
    target = revision or "main"
    created = False
    with _hub_errors(repo_id, target, api.endpoint), _remove_if_new_and_failed(api, repo_id, lambda: created):
        if not _retry(lambda: api.repo_exists(repo_id), "repo lookup"):
            _retry(lambda: api.create_repo(repo_id, private=private, exist_ok=True), "repo creation")
            created = True
        if revision is not None:
            _retry(lambda: api.create_branch(repo_id, branch=revision, exist_ok=True), "branch creation")
        card = str(render_card(run, repo_id, license=license, tags=tags, remote_code=remote_code))
        keep_card = not overwrite_card and _retry(lambda: _edited_remote_card(api, repo_id, target), "card lookup")
        payloads: dict[str, bytes] = {**{name: path.read_bytes() for name, path in files.items()},
                                      **{p: t.encode() for p, t in eval_result_files(run).items()}}
        payloads.update(code)  # overrides config.json/processor_config.json with their auto_map versions
        if (run.path / "recipe.yaml").is_file():
            payloads["recipe.yaml"] = yaml.safe_dump(run.recipe, sort_keys=False).encode()  # secrets removed
        if not keep_card:
            payloads["README.md"] = card.encode()
        _check_no_token(payloads, token)
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in sorted(payloads.items())]
        if not created:  # a branch starts as a copy of main: drop results that describe other weights
            present = _retry(lambda: api.list_repo_files(repo_id, revision=target), "file listing")
            operations += [CommitOperationDelete(path_in_repo=f) for f in stale_results(present, payloads)]
        message = commit_message or default_commit_message(run.spec, run.info, __version__)
        info = _retry(lambda: api.create_commit(repo_id, operations, revision=revision, commit_message=message),
                      "commit")
    if keep_card:
        logger.warning("kept the edited README.md of %s@%s; pass overwrite_card=True to replace it", repo_id, target)
    logger.info("pushed %d files to %s@%s (%s)", len(payloads), repo_id, target, info.oid)
    return PushResult(repo_id, target, info.commit_url, info.oid, sorted(payloads), keep_card)


def stale_results(present: list[str], payloads: dict[str, bytes]) -> list[str]:
    """Files on the branch that describe a particular model's weights (results, run facts, pictures) and that
    this push does not replace: left in place, they would describe other weights than the ones pushed."""
    return sorted(f for f in present if f not in payloads and (f in RESULT_FILES or f.startswith(".eval_results/")))


def check_repo_id(repo_id: str) -> None:
    """``namespace/name`` with Hub-legal characters; no bare name, no ``..`` or extra slashes."""
    if (problem := repo_id_problem(repo_id)) is not None:
        raise HubError(f"--repo-id / hub.repo_id: {problem}")


def verify_run_folder(run_dir: str | Path) -> None:
    """Refuse to publish a folder that is not whole: a run that ``mmzoo train`` has not finished, a
    checkpoint whose save was interrupted, a safetensors file that does not parse (header and size) or a
    config that does not load."""
    path = Path(run_dir)
    if not path.is_dir():
        raise HubError(f"{path}: no such folder; pass a run directory written by `mmzoo train` or save_pretrained")
    status_file = path / RUN_STATUS
    if status_file.is_file():
        try:
            status = json.loads(status_file.read_text(encoding="utf-8")).get("status")
        except (OSError, ValueError, AttributeError):
            status = "unreadable"
        if status != "complete":
            raise HubError(
                f"{path}: this run did not finish ({RUN_STATUS} says {status!r}: it was interrupted or is still "
                "running); finish it with `mmzoo train RECIPE --resume` (same recipe and --set options), then push "
                "again. Nothing was uploaded"
            )
    if (path / CHECKPOINT_MARKER).is_file() or (path / "trainer_state.json").is_file():
        if (problem := checkpoint_problem(path)) is not None:
            raise HubError(f"{path}: incomplete checkpoint ({problem}); push a complete checkpoint or the finished "
                           "run. Nothing was uploaded")
    for weights in sorted(path.glob("*.safetensors")):
        if (problem := safetensors_problem(weights)) is not None:
            raise HubError(
                f"{weights}: not a whole safetensors file ({problem}); the save was interrupted. Rerun "
                "`mmzoo train RECIPE --resume` (or save_pretrained again), then push. Nothing was uploaded"
            )
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise HubError(f"{index}: unreadable shard index ({err}); save the model again") from None
        missing = sorted(s for s in shards if not (path / s).is_file())
        if missing:
            raise HubError(f"{index}: shards {missing} are missing; save the model again. Nothing was uploaded")
    config = path / "config.json"
    if config.is_file():
        from transformers import AutoConfig

        try:
            AutoConfig.from_pretrained(str(path), local_files_only=True)
        except Exception as err:  # noqa: BLE001 - any failure means the pushed repo would not load
            first = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
            raise HubError(f"{config}: the config does not load ({first}); save the model again. Nothing was "
                           "uploaded") from None


def _retry(call, what: str):
    """``call()`` tried up to ``TRIES`` times on HTTP 429/5xx and connection failures, with back-off; the
    final error says how many tries were made."""
    tries = max(1, int(os.environ.get("MMZOO_HUB_TRIES", TRIES)))
    delay = float(os.environ.get("MMZOO_HUB_RETRY_DELAY", RETRY_BASE_DELAY))
    for attempt in range(1, tries + 1):
        try:
            return call()
        except Exception as err:
            if attempt == tries or not _is_retryable(err):
                if attempt > 1 or _is_retryable(err):
                    err.mmzoo_tries = attempt  # read by _hub_errors' messages
                raise
            logger.warning("hub %s failed (try %d of %d: %s); retrying in %.1fs", what, attempt, tries,
                           _short(err), delay * 2 ** (attempt - 1))
            time.sleep(delay * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _is_retryable(err: BaseException) -> bool:
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else None
        return status is not None and (status >= 500 or status in (408, 429))
    if isinstance(err, RuntimeError) and err.__cause__ is not None:
        return _is_retryable(err.__cause__)
    return _is_transport_error(err)


def _short(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:200]


@contextlib.contextmanager
def _remove_if_new_and_failed(api: HfApi, repo_id: str, was_created) -> Iterator[None]:
    """A repo that this push created is deleted again when the push fails, so no empty repo is left."""
    try:
        yield
    except BaseException:
        if was_created():
            try:
                api.delete_repo(repo_id, missing_ok=True)
                logger.warning("deleted the empty repo %s that the failed push had created", repo_id)
            except Exception as cleanup:  # noqa: BLE001 - report the push's own error, not this one
                logger.warning("the failed push created %s and could not delete it (%s); it holds no model "
                               "files, the next push reuses it", repo_id, _short(cleanup))
        raise


def _run_files(run: Run) -> dict[str, Path]:
    files = {p.name: p for p in sorted(run.path.iterdir())
             if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in PUSHED_PATTERNS)}
    if not any(name.endswith(".safetensors") for name in files):
        raise HubError(f"{run.path}: no *.safetensors weights; save the model with save_pretrained() "
                       "(safe_serialization is the default) before pushing")
    return files


def _edited_remote_card(api: HfApi, repo_id: str, revision: str) -> bool:
    """True when the Hub has a README.md at ``revision`` that mmzoo did not generate or that was edited."""
    try:
        path = api.hf_hub_download(repo_id, "README.md", revision=revision)
    except RemoteEntryNotFoundError:
        return False
    return not is_generated_card(Path(path).read_text(encoding="utf-8"))


def _check_no_token(payloads: dict[str, bytes], token: str) -> None:
    leaking = [name for name, data in payloads.items() if token.encode() in data]
    if leaking:
        raise HubError(f"refusing to push: the Hub token appears in {leaking}; remove it from those files")


@contextlib.contextmanager
def _hub_errors(repo_id: str, revision: str, endpoint: str) -> Iterator[None]:
    """Turn huggingface_hub/httpx errors into HubError messages that say what happened and what to do."""
    where = f"{repo_id}@{revision} on {endpoint}"
    nothing = "nothing was committed"
    try:
        yield
    except LocalTokenNotFoundError:
        raise HubError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass token=...") from None
    except RepositoryNotFoundError as err:
        raise HubError(f"{where}: repository not found or not visible to this token ({_server_message(err)}); "
                       f"check the repo id and the token's account; {nothing}") from err
    except RevisionNotFoundError as err:
        raise HubError(f"{where}: branch not found ({_server_message(err)}); {nothing}") from err
    except HfHubHTTPError as err:
        raise HubError(_http_message(err, where, nothing)) from err
    except ValueError as err:
        if "Invalid metadata in README.md" not in str(err):
            raise
        raise HubError(f"{where}: the Hub rejected the model card metadata: {err}; {nothing}") from err
    except RuntimeError as err:  # LFS upload errors come wrapped: RuntimeError("Error while uploading ...")
        cause = err.__cause__
        if isinstance(cause, HfHubHTTPError):
            if getattr(err, "mmzoo_tries", None):
                cause.mmzoo_tries = err.mmzoo_tries
            raise HubError(f"{_http_message(cause, where, nothing)} [{_short(err)}]") from err
        if _is_transport_error(cause):
            raise HubError(f"{where}: connection to the Hub failed {_tries(err)}({cause!r}); {nothing}; retry "
                           f"later [{_short(err)}]") from err
        raise
    except Exception as err:
        if not _is_transport_error(err):
            raise
        raise HubError(f"{where}: connection to the Hub failed {_tries(err)}({err!r}); the commit was not "
                       "confirmed, check the repo's history before retrying") from err


def _tries(err: BaseException) -> str:
    tries = getattr(err, "mmzoo_tries", None)
    return f"after {tries} tries " if tries else ""


def _http_message(err: HfHubHTTPError, where: str, nothing: str) -> str:
    status = err.response.status_code if err.response is not None else None
    detail = _server_message(err)
    if status == 401:
        return f"{where}: the token was rejected (401: {detail}); create a new token or run `hf auth login`; {nothing}"
    if status == 403:
        return (f"{where}: no write access (403: {detail}); use a write token of the repo's owner or an org "
                f"member, or push to your own namespace; {nothing}")
    if status is not None and status >= 500:
        tries = getattr(err, "mmzoo_tries", None)
        made = f"after {tries} tries" if tries else "after the client's retries"
        return f"{where}: the Hub failed with HTTP {status} {made} ({detail}); {nothing}; retry later"
    return f"{where}: HTTP {status} ({detail}); {nothing}"


def _server_message(err: HfHubHTTPError) -> str:
    return getattr(err, "server_message", None) or str(err).splitlines()[0]


def _is_transport_error(err: BaseException | None) -> bool:
    """Connection-level failures of huggingface_hub's HTTP stack (httpx2 in 2.x, httpx in 1.x)."""
    import importlib

    classes: list[type] = [ConnectionError]
    for module in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            classes.append(importlib.import_module(module).TransportError)
    return isinstance(err, tuple(classes))


def publish_run(folder: Path, hub, *, revision: str | None = None, commit_message: str | None = None,
                checkpoint: bool = False) -> PushResult:
    """:func:`push_run` of a run (or, ``checkpoint=True``, a checkpoint) folder with a recipe's ``hub:`` settings:
    the ``publish`` service of training (``mmzoo.train.train``)."""
    if checkpoint:
        return push_run(folder, hub.repo_id, private=hub.private, revision=revision,
                        commit_message=commit_message, remote_code=hub.remote_code, license=hub.license,
                        tags=tuple(hub.tags))
    return push_run(folder, hub.repo_id, private=hub.private, revision=revision or hub.revision,
                    commit_message=commit_message or hub.commit_message, overwrite_card=hub.overwrite_card,
                    remote_code=hub.remote_code, license=hub.license, tags=tuple(hub.tags))
