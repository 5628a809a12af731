"""The `folkrnn` command line: argument parsing and printing only.

Each group of subcommands lives in its own module with a `register(subparsers)`
function; the work itself is done by the library modules. A `FolkRNNError` (a user
mistake) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from folkrnn import __version__
from folkrnn.errors import FolkRNNError

# Order = order in `folkrnn --help`.
_COMMAND_MODULES = ("codec", "corpus", "info", "generate", "score", "train", "evaluate", "explain", "demo", "serve")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="folkrnn",
        description="folk-rnn v2: ABC <-> tokens, training, generation, evaluation and interpretation.",
    )
    parser.add_argument("--version", action="version", version=f"folkrnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"folkrnn.cli.{name}").register(sub)
    return parser


def _sigterm_as_interrupt():
    """SIGTERM (`kill`, `timeout`) ends a command the way Ctrl-C does: finished output is
    kept. Returns the handler it replaced (None when not in the main thread)."""
    import signal
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler) or signal.SIG_DFL


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on bad usage
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    previous = _sigterm_as_interrupt()
    try:
        return int(args.func(args) or 0)
    except FolkRNNError as e:
        print(f"folkrnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"folkrnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `folkrnn generate | head`
        try:
            sys.stdout = None  # type: ignore[assignment]
        finally:
            return 0
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)
