"""Item 10 of issue 13, the CLI side: Ctrl-C ends in one line with the resume command (which works), any
other unexpected exception in a short message with the hint to rerun with --debug (which shows it)."""

from __future__ import annotations

import os
import shlex
import signal

import pytest

from mmzoo.cli import main
from mmzoo.train import train

from .conftest import FAST, TINY, in_child, same_weights, tiny

TOKEN = "hf_" + "Z9y8X7w6V5u4T3s2R1q0PoNmLkJiHgFe"


def test_ctrl_c_prints_one_line_and_the_printed_resume_command_finishes_the_run(tmp_path):
    out, err_file = tmp_path / "run", tmp_path / "stderr.txt"
    args = ["train", str(TINY / "clip-coco.yaml"), *(f"--set={s}" for s in [*FAST, f"training.output_dir={out}"])]

    def child():
        from transformers.trainer_callback import CallbackHandler

        step_end = CallbackHandler.on_step_end

        def interrupt_at_step_3(self, args, state, control):
            if state.global_step == 3:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends
            return step_end(self, args, state, control)

        # patched on transformers' handler (never re-imported by other tests, unlike mmzoo's modules), and with
        # Python's own SIGINT handler, as a fresh `mmzoo` process has it (the forked pytest may have another)
        CallbackHandler.on_step_end = interrupt_at_step_3
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import sys

        sys.stderr = open(err_file, "w")  # noqa: SIM115 - the child exits right after
        code = main(args)
        sys.stderr.flush()
        os._exit(code)

    assert in_child(child) == 130
    # (progress bars of the datasets library share stderr; mmzoo's own output is its error line)
    lines = [line for line in err_file.read_text().splitlines() if line.startswith(("interrupted", "error", "  "))]
    assert "Traceback" not in err_file.read_text() and "KeyboardInterrupt" not in err_file.read_text()
    assert len(lines) == 1 and lines[0].startswith("interrupted; resume with: mmzoo train "), lines
    command = shlex.split(lines[0].removeprefix("interrupted; resume with: "))
    assert command[-1] == "--resume"
    assert main(command[1:]) == 0  # the printed command, as given
    reference = train(tiny(tmp_path / "reference"), progress=False)
    assert same_weights(out, reference.run_dir)


def test_unexpected_exception_gives_a_short_message_and_debug_shows_it(tmp_path, capsys, monkeypatch):
    import mmzoo.train

    def broken(*args, **kwargs):
        raise TypeError(f"something odd with {TOKEN}\nsecond line of detail")

    monkeypatch.setattr(mmzoo.train, "train", broken)
    args = ["train", str(TINY / "clip-coco.yaml"), f"--set=training.output_dir={tmp_path}"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "error: unexpected TypeError: something odd with hf_***"
    assert "rerun with --debug" in err and "Traceback" not in err and "second line" not in err
    with pytest.raises(TypeError, match="something odd"):
        main(["--debug", *args])


def test_errors_are_redacted_at_the_cli(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text(f"model: mm-clip-tiny\ndata: {{train: {{source: builtin, name: {TOKEN}}}}}\n")
    assert main(["train", str(tmp_path / "r.yaml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert TOKEN not in err and err.startswith("error: ")
