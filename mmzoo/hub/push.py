"""Publish a run directory to the Hub in ONE commit: weights, config, processor, recipe, metrics and card.

Nothing is half-written on failure: files are staged by the client (preupload/LFS) and become visible only
when the single ``create_commit`` lands. A README edited on the Hub is kept unless ``overwrite_card=True``.
"""

from __future__ import annotations

import contextlib
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import yaml
from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalTokenNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..errors import HubError
from ..utils.logging import get_logger
from ..version import __version__
from .card import PICTURES, Run, eval_result_files, is_generated_card, load_run, render_card
from .facts import RUN_INFO, default_commit_message
from .remote_code import remote_code_files

logger = get_logger(__name__)
PICTURE_FILES = tuple(file for file, _ in PICTURES)  # loss curve and examples, shown in the card

# top-level run files that belong on the Hub (checkpoint-*/ folders and training logs never do)
PUSHED_PATTERNS = (
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
    "processor_config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "*.model",
    "chat_template.jinja", "eval_results.json", RUN_INFO, *PICTURE_FILES,
)


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
    run = load_run(run_dir)
    token = token or get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass token=...")
    files = _run_files(run)
    code = remote_code_files(run) if remote_code else {}  # built before any request: a bundling error pushes nothing
    api = HfApi(token=token, library_name="mmzoo", library_version=__version__)
    target = revision or "main"
    with _hub_errors(repo_id, target, api.endpoint):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        card = str(render_card(run, repo_id, license=license, tags=tags, remote_code=remote_code))
        keep_card = not overwrite_card and _edited_remote_card(api, repo_id, target)
        payloads: dict[str, bytes] = {**{name: path.read_bytes() for name, path in files.items()},
                                      **{p: t.encode() for p, t in eval_result_files(run).items()}}
        payloads.update(code)  # overrides config.json/processor_config.json with their auto_map versions
        if (run.path / "recipe.yaml").is_file():
            payloads["recipe.yaml"] = yaml.safe_dump(run.recipe, sort_keys=False).encode()  # secrets removed
        if not keep_card:
            payloads["README.md"] = card.encode()
        _check_no_token(payloads, token)
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in sorted(payloads.items())]
        info = api.create_commit(repo_id, operations, revision=revision,
                                 commit_message=commit_message
                                 or default_commit_message(run.spec, run.info, __version__))
    if keep_card:
        logger.warning("kept the edited README.md of %s@%s; pass overwrite_card=True to replace it", repo_id, target)
    logger.info("pushed %d files to %s@%s (%s)", len(payloads), repo_id, target, info.oid)
    return PushResult(repo_id, target, info.commit_url, info.oid, sorted(payloads), keep_card)


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
            raise HubError(f"{_http_message(cause, where, nothing)} [{err}]") from err
        if _is_transport_error(cause):
            raise HubError(f"{where}: connection to the Hub failed ({cause!r}); {nothing}; retry later [{err}]") from err
        raise
    except Exception as err:
        if not _is_transport_error(err):
            raise
        raise HubError(f"{where}: connection to the Hub failed ({err!r}); the commit was not confirmed, check "
                       "the repo's history before retrying") from err


def _http_message(err: HfHubHTTPError, where: str, nothing: str) -> str:
    status = err.response.status_code if err.response is not None else None
    detail = _server_message(err)
    if status == 401:
        return f"{where}: the token was rejected (401: {detail}); create a new token or run `hf auth login`; {nothing}"
    if status == 403:
        return (f"{where}: no write access (403: {detail}); use a write token of the repo's owner or an org "
                f"member, or push to your own namespace; {nothing}")
    if status is not None and status >= 500:
        return f"{where}: the Hub failed with HTTP {status} after retries ({detail}); {nothing}; retry later"
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
