"""The ``daskval`` command.

``daskval demo`` values the training points of scikit-learn's bundled breast
cancer data with TMC-Shapley on an embedded Dask cluster, in about a minute on
two cores, prints the dashboard links (Dask's and daskval's ``/daskval``
page), progress and the lowest- and
highest-valued points, and writes every value to a CSV file.

Each subcommand is a :class:`Command`: its name, its help, a function that adds
its options to an :mod:`argparse` sub-parser, and a function that runs it and
returns the exit code. New subcommands (``run``, ``report``, ``compare``, ...)
are added to :data:`COMMANDS`.

Exit codes: 0 on success, 1 when the work failed, 2 for bad command-line
arguments (argparse's convention), 130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import numpy as np

    from daskval.engine.run import ValuationHandle
    from daskval.result import ValuationResult

__all__ = ["COMMANDS", "Command", "CommandError", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Utility evaluations of the demo's default budget: about 55 s of valuation
#: (plus a few seconds of cluster start-up) on two cores, measured at ~500
#: logistic-regression fits per second with two single-threaded workers.
DEMO_BUDGET = 28_000
DEMO_OUTPUT = "daskval-demo-values.csv"


class CommandError(Exception):
    """A failure to report as ``daskval <command>: error: <message>``, exit 1."""


@dataclass(frozen=True)
class Command:
    """A ``daskval`` subcommand.

    Attributes
    ----------
    name : str
        What the user types after ``daskval``.
    help : str
        One line for ``daskval --help``.
    description : str
        The paragraph at the top of ``daskval <name> --help``.
    add_arguments : callable
        Adds the subcommand's options to its sub-parser.
    run : callable
        Runs the subcommand with the parsed arguments; returns the exit code.
    epilog : str
        Text after the options in ``daskval <name> --help`` (examples).
    """

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    epilog: str = ""


# -- argument types --------------------------------------------------------------
def _argument_type(
    convert: Callable[[str], Any], accept: Callable[[Any], bool], what: str
) -> Callable[[str], Any]:
    """An argparse ``type=``: ``convert`` the text; refuse what ``accept`` rejects."""

    def parse(text: str) -> Any:
        try:
            value = convert(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


_positive_int = _argument_type(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _argument_type(int, lambda v: v >= 0, "a non-negative integer")
_positive_float = _argument_type(
    float, lambda v: 0 < v < float("inf"), "a positive number"
)
_fraction = _argument_type(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
_SCHEDULER_ADDRESS = re.compile(r"^((tcp|tls|ws|wss|ucx)://)?[\w.\-\[\]:]+$")
_scheduler_address = _argument_type(
    str,
    lambda v: bool(_SCHEDULER_ADDRESS.match(v)),
    "a scheduler address such as tcp://10.0.0.5:8786",
)


# -- shared helpers --------------------------------------------------------------
def _say(*parts: Any, file: TextIO | None = None) -> None:
    print(*parts, file=file or sys.stdout, flush=True)


def check_output_path(path: Path) -> Path:
    """Fail early (before any computing) when ``path`` cannot be written.

    Parameters
    ----------
    path : Path
        The file to write.

    Returns
    -------
    Path
        The absolute path.

    Raises
    ------
    CommandError
        When the directory does not exist or is not writable, or ``path`` is
        a directory.
    """
    path = path.expanduser().absolute()
    if path.is_dir():
        raise CommandError(f"--output {path} is a directory; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise CommandError(f"--output: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise CommandError(f"--output: {path} is not writable")
    return path


def write_csv(result: ValuationResult, path: Path) -> None:
    """Write ``result.to_pandas()`` to ``path`` atomically (temp file, rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            result.to_pandas().to_csv(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def format_table(
    result: ValuationResult,
    positions: Sequence[int] | np.ndarray,
    labels: Sequence[str] | None = None,
) -> list[str]:
    """Lines of a table: rank, name, (label), value and stderr.

    Parameters
    ----------
    result : ValuationResult
        The values.
    positions : sequence of int
        Which entries of ``result``'s arrays to list, in this order.
    labels : sequence of str, optional
        One label per player index (e.g. the class of a training point).
    """
    header = f"{'rank':>5}  {'name':>6}  "
    if labels is not None:
        header += f"{'label':<10}  "
    header += f"{'value':>11}  {'stderr':>10}"
    lines = [header]
    for rank, i in enumerate(positions, start=1):
        line = f"{rank:>5}  {result.names[i]!s:>6}  "
        if labels is not None:
            line += f"{labels[int(result.indices[i])]:<10}  "
        line += f"{result.values[i]:>+11.6f}  {result.stderr[i]:>10.6f}"
        lines.append(line)
    return lines


def format_progress(progress: dict[str, Any], elapsed: float, budget: str) -> str:
    """One progress line from ``ValuationHandle.progress`` and the wall time."""
    return (
        f"  {elapsed:6.1f} s  {100 * progress['completion']:5.1f}%  "
        f"{progress['n_evaluations']:>9,} evaluations  "
        f"{progress['n_samples']:>6,} permutations  ({budget})"
    )


def wait_with_progress(
    handle: ValuationHandle, interval: float, budget: str
) -> ValuationResult:
    """Print a progress line every ``interval`` seconds until the run ends.

    A Ctrl-C cancels the run and returns the samples merged so far (status
    ``"interrupted"``), so the caller can still report them.
    """
    began = last = time.monotonic()
    try:
        while not handle.done():
            time.sleep(min(0.1, interval))
            now = time.monotonic()
            if now - last >= interval and not handle.done():
                last = now
                _say(format_progress(handle.progress, now - began, budget))
    except KeyboardInterrupt:
        _say("\ninterrupted: stopping the run and keeping the samples merged so far")
        handle.cancel(status="interrupted")
    result = handle.result()
    _say(format_progress(handle.progress, time.monotonic() - began, budget))
    return result


def summarize_problems(result: ValuationResult) -> list[str]:
    """Short lines on failed fits and model warnings, from the result's metadata.

    The engine logs the same with the full first traceback; the command line
    shows this summary instead (and the log with ``--verbose``).
    """
    lines = []
    if result.n_failed:
        first = result.metadata.get("first_failure") or ""
        last_line = next(
            (ln.strip() for ln in reversed(first.splitlines()) if ln.strip()), "?"
        )
        lines.append(
            f"note: {result.n_failed:,} of {result.n_evaluations:,} fits failed and "
            f"scored the utility's default; the first: {last_line}"
        )
    for message, count in (result.metadata.get("warnings") or {}).items():
        lines.append(f"note: model warning ({count:,} times): {message}")
    return lines


def _connect(args: argparse.Namespace, stack: ExitStack) -> Any:
    """The client the command runs on; cluster start-up is printed and timed.

    The default is daskval's embedded LocalCluster (one single-threaded worker
    process per core), as ``fit()`` would start it. ``--workers`` starts a
    LocalCluster of that size instead and ``--scheduler`` connects to a running
    one; the engine builds all three.
    """
    started = time.monotonic()
    if args.scheduler is not None:
        from daskval.engine.cluster import connect_scheduler

        _say(f"connecting to the Dask scheduler at {args.scheduler} ...")
        try:
            client = connect_scheduler(args.scheduler, timeout=10, worker_timeout=60)
        except (OSError, TimeoutError, ValueError) as exc:
            raise CommandError(
                f"could not connect to the scheduler at {args.scheduler}: {exc}"
            ) from exc
        stack.callback(client.close)
    elif args.workers is not None:
        from daskval.engine.cluster import local_cluster

        _say(f"starting a local Dask cluster with {args.workers} worker processes ...")
        client = stack.enter_context(local_cluster(args.workers))
    else:
        from daskval.engine import resolve_client

        _say("starting daskval's embedded Dask cluster ...")
        client = resolve_client()
    n_workers = len(client.nthreads())
    n_threads = sum(client.nthreads().values())
    _say(
        f"cluster ready in {time.monotonic() - started:.1f} s: {n_workers} workers, "
        f"{n_threads} threads"
    )
    _say(f"Dask dashboard: {client.dashboard_link}")
    return client


# -- daskval demo ---------------------------------------------------------------
def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget",
        type=_positive_int,
        default=DEMO_BUDGET,
        metavar="EVALUATIONS",
        help=(
            "stop after this many model fits (utility evaluations); the result "
            "holds the longest run of permutations, in sample order, that fits "
            f"in it (default: {DEMO_BUDGET:,}, about a minute on 2 cores)"
        ),
    )
    budget.add_argument(
        "--samples",
        type=_positive_int,
        default=None,
        metavar="PERMUTATIONS",
        help="stop after exactly this many permutations instead of --budget",
    )
    parser.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help=(
            "root seed; the same seed and budget give the same values on any "
            "number of workers (default: 0)"
        ),
    )
    parser.add_argument(
        "--truncation",
        type=_fraction,
        default=0.01,
        metavar="RTOL",
        help=(
            "TMC-Shapley: stop scanning a permutation once the score is within "
            "RTOL (relative) of the full model's; 0 scans whole permutations "
            "(default: 0.01)"
        ),
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path(DEMO_OUTPUT),
        metavar="CSV",
        help=f"where to write all values (default: ./{DEMO_OUTPUT})",
    )
    parser.add_argument(
        "--top",
        type=_positive_int,
        default=10,
        metavar="K",
        help="how many lowest- and highest-valued points to print (default: 10)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help=(
            "start a local cluster of N single-threaded worker processes "
            "(default: daskval's embedded cluster, one worker per core)"
        ),
    )
    where.add_argument(
        "--scheduler",
        type=_scheduler_address,
        default=None,
        metavar="ADDRESS",
        help="run on a running Dask cluster, e.g. tcp://10.0.0.5:8786",
    )
    parser.add_argument(
        "--progress-interval",
        type=_positive_float,
        default=3.0,
        metavar="SECONDS",
        help="print a progress line this often (default: 3)",
    )


def _run_demo(args: argparse.Namespace) -> int:
    began = time.monotonic()
    output = check_output_path(args.output)

    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import daskval as dv

    bunch = load_breast_cancer()
    data = dv.Dataset.from_sklearn(bunch, train_size=0.7, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression())
    utility = dv.ModelUtility(model, data, scoring="accuracy")
    stop: dv.StoppingCriterion
    if args.samples is not None:
        stop = dv.MaxSamples(args.samples)
        budget_label = f"budget {args.samples:,} permutations"
    else:
        stop = dv.MaxEvaluations(args.budget)
        budget_label = f"budget {args.budget:,} evaluations"
    truncation = dv.RelativeTruncation(args.truncation) if args.truncation else None
    valuation = dv.ShapleyValuation(
        utility,
        sampler=dv.PermutationSampler(truncation=truncation),
        stop=stop,
        seed=args.seed,
    )
    labels = [str(bunch.target_names[y]) for y in np.asarray(data.y_train)]
    full_score = utility(np.arange(utility.n))

    method = (
        f"TMC-Shapley (truncation rtol {args.truncation:g})"
        if truncation is not None
        else "permutation Shapley (no truncation)"
    )
    _say(
        f"daskval demo: {method} of the {utility.n} training points of "
        f"scikit-learn's breast_cancer data\n"
        f"  model: StandardScaler + LogisticRegression; utility: accuracy on "
        f"{len(data.y_test)} held-out points (all {utility.n} points give "
        f"{full_score:.4f})\n"
        f"  {budget_label}, seed {args.seed}"
    )

    with ExitStack() as stack:
        client = _connect(args, stack)
        handle = valuation.submit(client)
        if handle.dashboard_link is not None:
            # the run's own page: values, stderr, extremes, memo, failures
            _say(f"daskval dashboard: {handle.dashboard_link}")
        result = wait_with_progress(handle, args.progress_interval, budget_label)

    if result.n_samples == 0:
        _say("\nno permutation was finished: no values to show or write")
        return EXIT_INTERRUPTED if result.status == "interrupted" else EXIT_FAILURE
    k = min(args.top, len(result))
    order = np.argsort(result.values, kind="stable")
    _say(f"\n{k} lowest-valued training points")
    for line in format_table(result, order[:k], labels):
        _say(line)
    _say(f"\n{k} highest-valued training points")
    for line in format_table(result, order[::-1][:k], labels):
        _say(line)

    write_csv(result, output)
    _say(
        f"\n{result.n_samples:,} permutations, {result.n_evaluations:,} "
        f"evaluations ({result.n_failed} failed), status {result.status}, "
        f"{time.monotonic() - began:.1f} s in all"
    )
    for line in summarize_problems(result):
        _say(line)
    _say(f"wrote {len(result)} values to {output}")
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_OK


_DEMO = Command(
    name="demo",
    help="value breast_cancer's training points with TMC-Shapley (~1 minute)",
    description=(
        "Value the 398 training points of scikit-learn's bundled breast_cancer "
        "data (a 70/30 split, seed 0) for a StandardScaler + LogisticRegression "
        "pipeline scored by accuracy, with truncated Monte Carlo Shapley, on "
        "daskval's embedded Dask cluster. Prints the dashboard link, progress, "
        "and the lowest- and highest-valued points, and writes all values "
        "(name, value, stderr, count, index) to a CSV file. The default budget "
        "takes about a minute on two cores."
    ),
    epilog=(
        "examples:\n"
        "  daskval demo                        # about a minute\n"
        "  daskval demo --budget 2000          # a few seconds\n"
        "  daskval demo --seed 1 -o values.csv\n"
        "  daskval demo --scheduler tcp://127.0.0.1:8786"
    ),
    add_arguments=_demo_arguments,
    run=_run_demo,
)

#: The subcommands, in the order ``daskval --help`` lists them.
COMMANDS: tuple[Command, ...] = (_DEMO,)


# -- entry point -----------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``daskval`` argument parser, one sub-parser per :data:`COMMANDS` entry."""
    from daskval import __version__

    parser = argparse.ArgumentParser(
        prog="daskval",
        description=(
            "daskval: data valuation (Shapley, leave-one-out, ...) on Dask. "
            "Run 'daskval <command> --help' for a command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"daskval {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show daskval's log (cluster start-up, full failure tracebacks)",
    )
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="<command>"
    )
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=textwrap.fill(command.description, width=79),
            epilog=command.epilog or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub)
        sub.set_defaults(_command=command)
    return parser


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("daskval: %(levelname)s: %(message)s"))
    logger = logging.getLogger("daskval")
    logger.addHandler(handler)
    # failed fits and model warnings are summarised by the command itself
    logger.setLevel(logging.INFO if verbose else logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``daskval`` command line; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        0 on success, 1 on failure, 2 for usage errors, 130 on Ctrl-C.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "_command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.verbose)

    from daskval.exceptions import ScriptGuardError, ValuationError

    prefix = f"daskval {command.name}: error:"
    try:
        return command.run(args)
    except CommandError as exc:
        _say(prefix, exc, file=sys.stderr)
    except (ValuationError, ScriptGuardError) as exc:
        _say(prefix, exc, file=sys.stderr)
    except KeyboardInterrupt:
        _say("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        _say(prefix, f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_FAILURE
