"""``infersearch <command>``: the one front door (the console script and ``python -m infersearch``).

``run`` is the default: ``infersearch -m ...`` is ``infersearch run -m ...``, Hydra's own application
with its own flags. The other commands compose the same config through the same search path
(search/compose.py) and take ``--config-dir`` and ``key=value`` overrides as the run does. Importing
this module is cheap: a command's own modules load when it runs, so ``--help`` answers at once."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from infersearch.config import Config

PROG = "infersearch"


def _run(argv: list[str]) -> None:
    """Hydra's application; its flags are checked first, so a bad one is one line too."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.prog = f"{PROG} run"
    parser.error = lambda message: _fail("run", message)  # type: ignore[method-assign]
    parser.parse_args(argv)
    sys.argv = [sys.argv[0], *argv]  # @hydra.main reads sys.argv itself
    from infersearch.run import main

    main()


def _report(cfg: Config, overrides: list[str]) -> None:
    from infersearch.report.rebuild import report

    report(cfg, overrides)


def _serve(cfg: Config, overrides: list[str]) -> None:
    from infersearch.serve.cli import serve

    serve(cfg, overrides)


def _serve_tune(cfg: Config, overrides: list[str]) -> None:
    from infersearch.serve.cli import serve_tune

    serve_tune(cfg, overrides)


def _alerts(cfg: Config, overrides: list[str]) -> None:
    from infersearch.serve.cli import alerts

    alerts(cfg, overrides)


@dataclass(frozen=True)
class Command:
    summary: str  # the one line of ``infersearch --help``
    handler: Callable[[Config, list[str]], None]
    example: str


COMMANDS: dict[str, Command] = {
    "report": Command("rebuild a study's report files from its storage alone", _report, "study.name=digits_cnn"),
    "serve": Command("serve a study's exported model over HTTP (Prometheus metrics, dynamic batching)", _serve,
                     "study.name=digits_cnn serve.port=8080"),
    "serve-tune": Command("search the serving settings (batch size, delay, workers) under load", _serve_tune,
                          "study.name=digits_cnn tune.loads=[0.5,0.8]"),
    "alerts": Command("write the Prometheus alert rules derived from a study and its SLO", _alerts,
                      "study.name=digits_cnn alerts.out=alerts.yml"),
}  # fmt: skip
RUN_SUMMARY = "evaluate one configuration; with -m, run a study over `space` (the default command)"


def usage() -> str:
    width = max(map(len, ["run", *COMMANDS]))
    lines = [f"  {'run':<{width}}  {RUN_SUMMARY}"] + [f"  {n:<{width}}  {c.summary}" for n, c in COMMANDS.items()]
    return "\n".join([
        f"usage: {PROG} [<command>] [--config-dir DIR] [key=value ...]", "", "commands:", *lines, "",
        "Every command composes the study's Hydra config: --config-dir DIR adds a folder of your own configs,",
        f"key=value overrides a key. '{PROG} <command> --help' for one command ('{PROG} run --help': the config).",
    ])  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (its own print the usage first)."""

    def error(self, message: str) -> NoReturn:
        _fail(self.prog.removeprefix(f"{PROG} "), message)


def _parser(name: str, command: Command) -> _Parser:
    parser = _Parser(
        prog=f"{PROG} {name}", description=command.summary + ".", allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the example stays on one line
        epilog=f"The overrides are the study's own Hydra overrides, e.g.\n  {PROG} {name} {command.example}",
    )  # fmt: skip
    parser.add_argument("--config-dir", "-cd", metavar="DIR", help="a folder of your own configs, as for the study")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="any key of the config")
    return parser


def _fail(command: str | None, message: str) -> NoReturn:
    where = f"{PROG} {command}" if command else PROG
    print(f"{where}: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str]) -> None:
    """Dispatch ``argv`` (the arguments after the program's name); bad input is one line and exit 2."""
    first = argv[0] if argv else ""
    if first in ("-h", "--help"):
        print(usage())
        return
    if first == "run":
        return _run(argv[1:])
    if first not in COMMANDS:
        if first and not first.startswith(("-", "~")) and "=" not in first:  # neither a flag nor an override
            _fail(None, f"unknown command {first!r}; allowed: run, {', '.join(COMMANDS)} (or key=value overrides)")
        return _run(argv)
    command = COMMANDS[first]
    args = _parser(first, command).parse_intermixed_args(argv[1:])
    _command(first, command, args.overrides, args.config_dir)


def _command(name: str, command: Command, overrides: list[str], config_dir: str | None) -> None:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from infersearch.compose import compose_config
    from infersearch.core.errors import ConfigError

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request of serve-tune's load
    try:
        command.handler(compose_config(overrides, config_dir), overrides)
    except (ConfigError, HydraException, OmegaConfBaseException) as exc:
        _fail(name, f"{_unparsable(overrides)}{str(exc).strip().splitlines()[0]}")


def _unparsable(overrides: list[str]) -> str:
    """``override '<the first that Hydra cannot parse>': `` or nothing (Hydra's message does not say which)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_overrides([o])
        except HydraException:
            return f"override {o!r}: "
    return ""


def cli() -> None:
    """The ``infersearch`` console script. As with ``python -m infersearch``, the working directory comes
    first on the import path, so a ``_target_`` in the user's own project resolves; infersearch's own
    modules live under ``infersearch.``, which a project's ``models`` or ``search`` package cannot shadow."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    main(sys.argv[1:])
