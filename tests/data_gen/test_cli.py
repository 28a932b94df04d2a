"""The command-line helpers every entry point shares: one-line errors, and Ctrl-C or SIGTERM as a stop request."""

from __future__ import annotations

import signal

import pytest

from data_gen.cli import ArgumentParser, StopOnInterrupt, flag_message, ignoring_interrupts, stops_on_sigterm


def _interrupt() -> None:
    # raise() signals the calling thread, and raise_signal runs the handler before it returns. os.kill of
    # the process may be delivered to another thread (Ray's) and handled a moment later, outside the check.
    signal.raise_signal(signal.SIGINT)


def test_a_bad_option_is_one_line_and_exit_2(capsys):
    parser = ArgumentParser(prog="prog")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--n", "many"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prog: error: argument --n: invalid int value")


def test_the_first_ctrl_c_is_a_request_and_the_second_forces():
    before = signal.getsignal(signal.SIGINT)
    with StopOnInterrupt() as stop:
        assert not stop.requested
        _interrupt()
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            _interrupt()
    assert signal.getsignal(signal.SIGINT) is before


@pytest.fixture
def ctrl_c_raises():
    """Python's own Ctrl-C handler, whatever the suite was started with: `cmd &` in a script starts it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_without_force_no_number_of_ctrl_cs_interrupts(ctrl_c_raises):
    before = signal.getsignal(signal.SIGINT)
    with StopOnInterrupt(force=False) as stop:
        for _ in range(5):
            _interrupt()
        assert stop.requested
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt):  # the previous handler is back
        _interrupt()


def test_a_stop_can_be_requested_without_a_signal_and_sigterm_is_one():
    before = signal.getsignal(signal.SIGTERM)  # not SIG_DFL once a library (Ray) has set its own
    with StopOnInterrupt() as stop:
        stop.request()
        assert stop.requested
    with StopOnInterrupt() as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested
    with StopOnInterrupt((signal.SIGINT,)) as stop:  # only the signals asked for
        assert signal.getsignal(signal.SIGTERM) is before
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_entry_point_takes_sigterm_as_ctrl_c_even_with_ctrl_c_ignored():
    """A job started with `cmd &` from a script has SIGINT ignored; `kill` (SIGTERM) must still stop it cleanly."""
    seen = []

    @stops_on_sigterm
    def main(argv: list[str]) -> int:
        try:
            signal.raise_signal(signal.SIGTERM)
            seen.append("ran on")  # not reached: the signal raised in the line above
        except KeyboardInterrupt:
            return 130
        return 0

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with ignoring_interrupts():
        assert main([]) == 130 and seen == []
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert main.__name__ == "main"


def test_interrupts_are_ignored_while_children_start_and_restored_after():
    before = signal.getsignal(signal.SIGINT)
    with ignoring_interrupts():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        _interrupt()  # ignored: no KeyboardInterrupt
    assert signal.getsignal(signal.SIGINT) is before


def test_a_validation_error_speaks_in_flags():
    from typing import Literal

    from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

    class Config(BaseModel):
        model_config = ConfigDict(allow_inf_nan=False)
        steps: int = Field(1, ge=1)
        lr: float = Field(1.0, gt=0.0)
        obs_mode: Literal["image", "state"] = "image"
        method: str = "clean"
        sigma_min: float | None = None
        sigma_min_from: str | None = None
        window: str = "hann"
        betas: tuple[float, float] = (0.9, 0.99)

        @field_validator("window")
        @classmethod
        def _known(cls, window: str) -> str:
            if window != "hann":
                raise ValueError(f"unknown window {window!r}")
            return window

        @model_validator(mode="after")
        def _one_source(self):
            if self.method == "ambient" and self.sigma_min is None and self.sigma_min_from is None:
                raise ValueError("method 'ambient' needs exactly one of sigma_min or sigma_min_from")
            return self

    parser = ArgumentParser(prog="prog")
    for flag in ("--steps", "--lr", "--method", "--sigma-min", "--sigma-min-from", "--window"):
        parser.add_argument(flag)
    parser.add_argument("--obs")
    flags = parser.flags() | {"obs_mode": "--obs"}
    assert flags["sigma_min_from"] == "--sigma-min-from" and "help" not in flags

    def message(**values) -> str:
        with pytest.raises(ValidationError) as error:
            Config(**values)
        return flag_message(error.value, flags)

    assert message(steps=0) == "--steps must be at least 1, got 0"
    assert message(lr=float("inf")) == "--lr must be a finite number, got inf"
    assert message(lr=0.0, steps=0) == "--steps must be at least 1, got 0; --lr must be greater than 0.0, got 0.0"
    assert message(obs_mode="video") == "--obs must be 'image' or 'state', got 'video'"
    assert message(method="ambient") == "--method ambient needs exactly one of --sigma-min or --sigma-min-from"
    assert message(window="box") == "--window: unknown window 'box'"  # a field's own words are left as they are
    assert message(betas=(0.9, "x")).startswith("betas.1: should be a valid number")  # no flag: the field's name
