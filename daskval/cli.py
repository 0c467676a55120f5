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
import dataclasses
import logging
import os
import re
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from daskval._files import replacing

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
    with replacing(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        result.to_pandas().to_csv(fh)


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


def format_progress(
    progress: dict[str, Any], elapsed: float, budget: str, unit: str = "permutations"
) -> str:
    """One progress line from ``ValuationHandle.progress`` and the wall time."""
    return (
        f"  {elapsed:6.1f} s  {100 * progress['completion']:5.1f}%  "
        f"{progress['n_evaluations']:>9,} evaluations  "
        f"{progress['n_samples']:>6,} {unit}  ({budget})"
    )


def wait_with_progress(
    handle: ValuationHandle, interval: float, budget: str, unit: str = "permutations"
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
                _say(format_progress(handle.progress, now - began, budget, unit))
    except KeyboardInterrupt:
        _say("\ninterrupted: stopping the run and keeping the samples merged so far")
        handle.cancel(status="interrupted")
    result = handle.result()
    _say(format_progress(handle.progress, time.monotonic() - began, budget, unit))
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


def run_on_cluster(
    args: argparse.Namespace,
    valuation: Any,
    budget_label: str,
    unit: str = "permutations",
) -> ValuationResult:
    """Connect as ``args`` say, run ``valuation`` with progress lines, return
    its result (the samples merged so far after a Ctrl-C)."""
    with ExitStack() as stack:
        client = _connect(args, stack)
        handle = valuation.submit(client)
        if handle.dashboard_link is not None:
            # the run's own page: values, stderr, extremes, memo, failures
            _say(f"daskval dashboard: {handle.dashboard_link}")
        return wait_with_progress(handle, args.progress_interval, budget_label, unit)


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

    result = run_on_cluster(args, valuation, budget_label)

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


# -- options shared by run and compare (command line, or a YAML/TOML config) -----
@dataclass(frozen=True)
class Option:
    """An option that a config file may set too (the command line wins).

    Attributes
    ----------
    key : str
        The config key and the attribute name (``--train-size`` is ``train_size``).
    convert : callable
        Text to value (an argparse ``type=``); config values go through it too.
    default : object
        The value when neither the command line nor the config sets it.
    help : str
        The option's help.
    metavar : str, optional
        Its placeholder in the help.
    short : str, optional
        A short flag such as ``-o``.
    """

    key: str
    convert: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None
    short: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


def _choice(choices: Sequence[str], what: str) -> Callable[[str], str]:
    """An argparse ``type=`` accepting one of ``choices`` (argparse's own
    ``choices=`` would list them in the usage line, and not check configs)."""

    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(
                f"expected {what} ({', '.join(choices)}), got {text!r}"
            )
        return text

    parse.__name__ = what
    return parse


def _method_list(text: str) -> list[str]:
    from daskval.evaluate import BASELINE, METHODS

    names = [t.strip() for t in text.split(",") if t.strip()]
    known = [*METHODS, BASELINE]
    bad = [n for n in names if n not in known]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated methods from {', '.join(known)}; got {text!r}"
        )
    return names


def _size(text: str) -> float | int:
    """A split size: a fraction such as 0.5, or a number of rows such as 200."""
    try:
        value: float | int = int(text) if text.isdigit() else float(text)
    except ValueError:
        value = -1
    if (isinstance(value, int) and value >= 1) or (
        isinstance(value, float) and 0 < value < 1
    ):
        return value
    raise argparse.ArgumentTypeError(
        f"expected a fraction in (0, 1) or a number of rows, got {text!r}"
    )


def _dataset_names() -> list[str]:
    from daskval.datasets import DATASETS

    return sorted(DATASETS)


def _model_names() -> list[str]:
    from daskval.evaluate import MODELS

    return sorted(MODELS)


def _method_names() -> list[str]:
    from daskval.evaluate import METHODS

    return list(METHODS)


_MODEL_CLASS = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _model_spec(text: str) -> str:
    """A bundled model's name, or ``module:Class`` (imported later, so that
    an import error is reported as the command's error, not argparse's)."""
    if ":" in text:
        if not _MODEL_CLASS.match(text):
            raise argparse.ArgumentTypeError(
                f"expected module:Class such as sklearn.svm:SVC, got {text!r}"
            )
        return text
    return _choice(_model_names(), "a model or module:Class")(text)


def _model_param(text: str) -> tuple[str, Any]:
    """``name=value`` of ``--model-param``; the value as a Python literal
    (``0.5``, ``200``, ``None``, ``'balanced'``), else as text."""
    import ast

    name, equals, value = text.partition("=")
    if not equals or not name.isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected name=value such as C=0.5, got {text!r}"
        )
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def _data_options(train_size: int, label_noise: float) -> list[Option]:
    return [
        Option(
            "dataset",
            _choice(_dataset_names(), "a bundled dataset"),
            "breast_cancer",
            f"scikit-learn dataset, no download: {', '.join(_dataset_names())} "
            "(default: breast_cancer)",
            "NAME",
        ),
        Option(
            "train_size",
            _size,
            train_size,
            "training rows to value, a count or a fraction; 20%% of the rows "
            "score the utility and 20%% are held out for experiments "
            f"(default: {train_size})",
            "ROWS",
        ),
        Option(
            "label_noise",
            _fraction,
            label_noise,
            "flip this fraction of the training labels (regression: add noise) "
            f"(default: {label_noise:g})",
            "FRACTION",
        ),
        Option(
            "model",
            _model_spec,
            None,
            f"{', '.join(_model_names())}, or module:Class of any scikit-learn "
            "estimator (default: logistic for classification, ridge for "
            "regression)",
            "NAME|module:Class",
        ),
        Option(
            "seed",
            _non_negative_int,
            0,
            "root seed of the split, the noise and the method (default: 0)",
        ),
    ]


_CLUSTER_OPTIONS = [
    Option(
        "workers",
        _positive_int,
        None,
        "start a local cluster of N single-threaded worker processes "
        "(default: daskval's embedded cluster, one worker per core)",
        "N",
    ),
    Option(
        "scheduler",
        _scheduler_address,
        None,
        "run on a running Dask cluster, e.g. tcp://10.0.0.5:8786",
        "ADDRESS",
    ),
]


def _add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="read options from a YAML (.yaml, .yml) or TOML (.toml) file; "
        "its keys are the long options' names (train_size or train-size); "
        "options given on the command line win",
    )
    for option in options:
        flags = [option.short, option.flag] if option.short else [option.flag]
        parser.add_argument(
            *flags,
            dest=option.key,
            type=option.convert,
            default=None,
            metavar=option.metavar,
            help=option.help,
        )


def load_config(path: Path) -> dict[str, Any]:
    """Read a YAML or TOML config file into a flat mapping of option keys.

    Raises
    ------
    CommandError
        When the file is missing, unreadable, of another format, not a
        mapping, or when the parser it needs is not installed.
    """
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise CommandError(f"--config {path}: expected a .yaml, .yml or .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"--config {path}: {exc.strerror or exc}") from exc
    if suffix == ".toml":
        data = _parse_toml(text, path)
    else:
        data = _parse_yaml(text, path)
    if not isinstance(data, dict):
        raise CommandError(
            f"--config {path}: expected a mapping of options, got {type(data).__name__}"
        )
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _parse_toml(text: str, path: Path) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise CommandError(
                "reading TOML on Python 3.10 needs tomli: pip install 'daskval[cli]'"
            ) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CommandError(f"--config {path}: not valid TOML: {exc}") from exc


def _parse_yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise CommandError(
            "reading YAML needs PyYAML: pip install 'daskval[cli]'"
        ) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CommandError(f"--config {path}: not valid YAML: {exc}") from exc


def resolve_options(
    args: argparse.Namespace, options: Sequence[Option]
) -> argparse.Namespace:
    """The options' values: command line, else config file, else default.

    Config values are checked by the same conversions as the command line's.
    """
    config = load_config(args.config) if args.config is not None else {}
    keys = {o.key: o for o in options}
    unknown = sorted(set(config) - set(keys))
    if unknown:
        raise CommandError(
            f"--config {args.config}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(keys)}"
        )
    values = {}
    for option in options:
        value = getattr(args, option.key)
        if value is None and config.get(option.key) is not None:
            value = _from_config(option, config[option.key], args.config)
        values[option.key] = option.default if value is None else value
    resolved = argparse.Namespace(**{**vars(args), **values})
    if resolved.workers is not None and resolved.scheduler is not None:
        raise CommandError("give --workers or --scheduler, not both")
    return resolved


def _from_config(option: Option, value: Any, path: Path) -> Any:
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)  # a YAML/TOML list of methods
    elif isinstance(value, bool) or isinstance(value, dict):
        raise CommandError(
            f"--config {path}: {option.key}: expected {option.metavar or 'a value'}, "
            f"got {value!r}"
        )
    try:
        return option.convert(str(value))
    except argparse.ArgumentTypeError as exc:
        raise CommandError(f"--config {path}: {option.key}: {exc}") from exc


# -- tables: CSV or parquet ------------------------------------------------------
TABLE_SUFFIXES = (".csv", ".parquet")


def check_table_path(path: Path, option: str = "--output") -> Path:
    """A writable ``.csv`` or ``.parquet`` path, checked before any work."""
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise CommandError(f"{option} {path}: expected a .csv or .parquet file name")
    if path.suffix.lower() == ".parquet":
        _require_pyarrow()
    return check_output_path(path)


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise CommandError(
            "parquet tables need pyarrow: pip install 'daskval[parquet]' (or use .csv)"
        ) from exc


def write_table(frame: Any, path: Path) -> None:
    """Write a DataFrame as CSV or parquet (by suffix), atomically."""
    with replacing(path) as tmp:
        if path.suffix.lower() == ".parquet":
            frame.to_parquet(tmp)
        else:
            frame.to_csv(tmp)


def _experiment_data(args: argparse.Namespace) -> Any:
    """Load and corrupt the dataset as the options say (fails before any cluster)."""
    from daskval import datasets

    try:
        data = datasets.load(
            args.dataset,
            train_size=args.train_size,
            valid_size=0.2,
            test_size=0.2,
            random_state=args.seed,
        )
    except ValueError as exc:
        raise CommandError(f"--train-size {args.train_size}: {exc}") from exc
    if args.label_noise:
        data = datasets.add_label_noise(data, args.label_noise, random_state=args.seed)
    return data


def _model(args: argparse.Namespace, task: str) -> Any:
    from daskval.evaluate import make_model

    name = args.model or ("logistic" if task == "classification" else "ridge")
    if ":" in name:
        model = _import_model(name)
    else:
        try:
            model = make_model(name, task)
        except ValueError as exc:
            raise CommandError(f"--model: {exc}") from exc
    params = _step_params(model, dict(getattr(args, "model_param", None) or []))
    if params:
        try:
            model.set_params(**params)
        except (TypeError, ValueError) as exc:
            raise CommandError(f"--model-param: {exc}") from exc
    return model


def _step_params(model: Any, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` for ``set_params``: a name a Pipeline lacks goes to its
    final step (the bundled models are a scaler and an estimator)."""
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline):
        return params
    known = model.get_params(deep=True)
    final = model.steps[-1][0]
    return {
        key if key in known else f"{final}__{key}": value
        for key, value in params.items()
    }


def _import_model(spec: str) -> Any:
    """An instance of ``module:Class`` with its default parameters."""
    import importlib

    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandError(
            f"--model {spec}: cannot import {module_name}: {exc}"
        ) from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise CommandError(f"--model {spec}: {module_name} has no class {class_name}")
    try:
        model = cls()
    except Exception as exc:  # a class that needs arguments, or breaks
        raise CommandError(
            f"--model {spec}: {class_name}() failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not (hasattr(model, "fit") and hasattr(model, "get_params")):
        raise CommandError(
            f"--model {spec}: {class_name} is not a scikit-learn estimator "
            "(it needs fit() and get_params())"
        )
    return model


def _read_user_table(path: Path) -> Any:
    """The DataFrame of ``--data``: a CSV, or a parquet file (its stored
    index kept, so it names the rows)."""
    import pandas as pd

    if not path.is_file():
        raise CommandError(f"--data {path}: no such file")
    if path.suffix.lower() == ".parquet":
        _require_pyarrow()
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:  # pandas raises many kinds on a bad file
        raise CommandError(f"--data {path}: could not read it: {exc}") from exc


def _table_data(args: argparse.Namespace) -> Any:
    """The user's table (``--data``) split into a Dataset; its task.

    The players are named by their row numbers in the file (0 for the first
    data row), so the values join back to it.
    """
    from sklearn.utils.multiclass import type_of_target

    import daskval as dv

    path = Path(args.data)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise CommandError(f"--data {path}: expected a .csv or .parquet file")
    if args.target is None:
        raise CommandError("--data needs --target COLUMN, the column to predict")
    if args.label_noise:
        raise CommandError("--label-noise corrupts bundled datasets only, not --data")
    frame = _read_user_table(path)
    if args.target not in frame.columns:
        raise CommandError(
            f"--target {args.target}: not a column of {path.name}; its columns: "
            f"{[str(c) for c in frame.columns[:10]]}"
        )
    try:
        data = dv.Dataset.from_pandas(
            frame,
            target=args.target,
            train_size=0.7 if args.train_size is None else args.train_size,
            random_state=args.seed,
        )
    except (TypeError, ValueError) as exc:
        raise CommandError(f"--data {path}: {exc}") from exc
    kind = type_of_target(data.y_train)
    task = "classification" if kind in ("binary", "multiclass") else "regression"
    features: Any = data.x_train  # from a DataFrame: a DataFrame
    text = [str(c) for c, t in features.dtypes.items() if t.kind not in "biuf"]
    if text and (args.model is None or ":" not in args.model):
        raise CommandError(
            f"--data {path}: the columns {text[:5]} are not numeric; the bundled "
            "models need numbers: encode them first, or pass your own estimator "
            "(--model module:Class) that handles them"
        )
    return data, task


# -- daskval run -----------------------------------------------------------------
def _run_options() -> list[Option]:
    data_options = _data_options(train_size=200, label_noise=0.0)
    # None: 200 rows of a bundled dataset, 70 % of --data
    data_options[1] = dataclasses.replace(
        data_options[1],
        default=None,
        help="training rows to value, a count or a fraction (default: 200 of a "
        "bundled dataset, split 60/20/20 into train, scoring and held-out "
        "rows; 0.7 of --data, the rest scoring)",
    )
    return [
        Option(
            "data",
            Path,
            None,
            "value the rows of your own table (.csv, or .parquet with pyarrow) "
            "instead of a bundled dataset; needs --target",
            "FILE",
        ),
        Option(
            "target",
            str,
            None,
            "with --data: the column to predict; every other column is a feature",
            "COLUMN",
        ),
        *data_options,
        Option(
            "method",
            _choice(_method_names(), "a method"),
            "tmc-shapley",
            f"{', '.join(_method_names())} (default: tmc-shapley)",
            "NAME",
        ),
        Option(
            "budget",
            _positive_int,
            2000,
            "model fits the method may spend (utility evaluations, bootstraps "
            "or sampled coalitions; ignored by loo and the knn-* methods) "
            "(default: 2000)",
            "FITS",
        ),
        *_CLUSTER_OPTIONS,
        Option(
            "output",
            Path,
            Path("daskval-values.csv"),
            "where to write the values: .csv or .parquet (one row per training "
            "point: name, value, stderr, count, index) (default: ./daskval-values.csv)",
            "FILE",
            "-o",
        ),
        Option(
            "result",
            Path,
            None,
            "also save the whole result (values and metadata, .npz) for "
            "'daskval report'",
            "FILE",
        ),
        Option(
            "progress_interval",
            _positive_float,
            3.0,
            "print a progress line this often (default: 3)",
            "SECONDS",
        ),
    ]


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    _add_options(parser, _run_options())
    parser.add_argument(
        "--model-param",
        dest="model_param",
        type=_model_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a parameter of the model, e.g. --model-param C=0.5 "
        "(repeatable; values are Python literals, else text)",
    )


@dataclass(frozen=True)
class _RunInputs:
    """What ``daskval run`` values: a bundled dataset's or the user's rows."""

    dataset: Any
    task: str
    name: str
    corrupted: np.ndarray

    @property
    def n_train(self) -> int:
        return int(self.dataset.n_train)


def _run_inputs(args: argparse.Namespace) -> _RunInputs:
    import numpy as np

    if args.data is not None:
        dataset, task = _table_data(args)
        return _RunInputs(dataset, task, Path(args.data).name, np.empty(0, int))
    if args.target is not None:
        raise CommandError("--target needs --data FILE, a table of your own")
    if args.train_size is None:
        args.train_size = 200
    data = _experiment_data(args)
    return _RunInputs(data.dataset(), data.task, data.name, data.corrupted)


def _run_run(args: argparse.Namespace) -> int:
    from daskval.evaluate import check_method, detection_scores, make_valuation

    began = time.monotonic()
    if args.data is not None and args.dataset is not None:
        raise CommandError("give --dataset or --data, not both")
    args = resolve_options(args, _run_options())
    output = check_table_path(args.output)
    saved = None if args.result is None else check_output_path(args.result)
    data = _run_inputs(args)
    model = _model(args, data.task)
    try:
        method = check_method(args.method, data.task)
        valuation = make_valuation(
            method, data.dataset, model, budget=args.budget, seed=args.seed
        )
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    _say(
        f"daskval run: {method} of the {data.n_train} training points of "
        f"{data.name} ({data.task}), {len(data.corrupted)} corrupted; "
        f"budget {args.budget:,}, seed {args.seed}"
    )
    result = run_on_cluster(args, valuation, f"budget {args.budget:,}", "samples")
    if result.n_samples == 0:
        _say("no sample was finished: no values to write")
        return EXIT_INTERRUPTED if result.status == "interrupted" else EXIT_FAILURE
    result.metadata["dataset"] = {
        "name": data.name,
        "task": data.task,
        "n_train": data.n_train,
        "corrupted": [int(i) for i in data.corrupted],
    }
    write_table(result.to_pandas(), output)
    if saved is not None:
        saved = result.save(saved)
    _say(
        f"\n{result.n_samples:,} samples, {result.n_evaluations:,} evaluations "
        f"({result.n_failed} failed), status {result.status}, "
        f"{time.monotonic() - began:.1f} s in all"
    )
    if len(data.corrupted):
        scores = detection_scores(result, data.corrupted)
        _say(
            f"noisy-label detection: F1 {scores.f1:.3f} (low 2-means cluster of "
            f"{scores.n_flagged}), AUROC {scores.auroc:.3f}"
        )
    for line in summarize_problems(result):
        _say(line)
    _say(f"wrote {len(result)} values to {output}")
    if saved is not None:
        _say(f"saved the result to {saved} (daskval report {saved})")
    return EXIT_INTERRUPTED if result.status == "interrupted" else EXIT_OK


_RUN = Command(
    name="run",
    help="value the training points of a bundled dataset or your own table",
    description=(
        "Value the training points of a bundled scikit-learn dataset (split "
        "60/20/20 into train, the utility's scoring split, and a held-out "
        "test split), or of your own CSV or parquet table (--data FILE "
        "--target COLUMN: 70 % of its rows are valued, the rest score), with "
        "one of daskval's methods, on the embedded cluster, a "
        "local cluster (--workers) or a running scheduler (--scheduler). "
        "Writes the values as CSV or parquet, one row per training point, "
        "named by its row number in --data (or the parquet file's index). "
        "Every option but --model-param can come from a "
        "YAML or TOML file (--config); the command line wins."
    ),
    epilog=(
        "examples:\n"
        "  daskval run --method banzhaf --budget 5000 -o values.parquet\n"
        "  daskval run --data rows.csv --target label --model sklearn.svm:SVC \\\n"
        "      --model-param C=0.5 --method data-oob\n"
        "  daskval run --dataset wine --label-noise 0.2 --method data-oob\n"
        "  daskval run --config experiment.yaml --scheduler tcp://10.0.0.5:8786\n"
        "\n"
        "experiment.yaml:\n"
        "  dataset: breast_cancer\n"
        "  method: tmc-shapley\n"
        "  budget: 5000\n"
        "  output: values.csv"
    ),
    add_arguments=_run_arguments,
    run=_run_run,
)


# -- daskval report --------------------------------------------------------------
def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "result",
        type=Path,
        metavar="RESULT",
        help="a saved result: .npz from 'daskval run --result' or "
        "ValuationResult.save(), or a values table (.csv or .parquet)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="HTML",
        help="the report to write (default: RESULT with the suffix .html)",
    )
    parser.add_argument(
        "--top",
        type=_positive_int,
        default=10,
        metavar="K",
        help="list the K highest- and lowest-valued points (default: 10)",
    )
    parser.add_argument("--title", default=None, help="the report's title")


def load_result(path: Path) -> ValuationResult:
    """A result from an ``.npz`` file, or from a values table (CSV or parquet).

    Raises
    ------
    CommandError
        When the file is missing or not a daskval result or values table.
    """
    import numpy as np

    from daskval.result import ValuationResult

    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            return ValuationResult.load(path)
        except (ValueError, KeyError, OSError) as exc:
            raise CommandError(f"{path}: not a daskval result: {exc}") from exc
    if suffix not in TABLE_SUFFIXES:
        raise CommandError(f"{path}: expected a .npz, .csv or .parquet file")
    frame = _read_table(path)
    missing = {"name", "value", "stderr", "count"} - set(frame.columns)
    if missing:
        raise CommandError(
            f"{path}: not a values table (missing columns {sorted(missing)})"
        )
    indices = frame["index"] if "index" in frame.columns else np.arange(len(frame))
    return ValuationResult(
        frame["value"].to_numpy(float),
        frame["stderr"].to_numpy(float),
        frame["count"].to_numpy(np.int64),
        names=frame["name"].astype(str).to_numpy(object),
        indices=np.asarray(indices, np.int64),
        metadata={"method": f"values from {path.name}"},
    )


def _read_table(path: Path) -> Any:
    import pandas as pd

    try:
        if path.suffix.lower() == ".parquet":
            _require_pyarrow()
            return pd.read_parquet(path).reset_index()
        return pd.read_csv(path, dtype={"name": str})
    except CommandError:
        raise
    except Exception as exc:  # pandas raises many kinds on a bad file
        raise CommandError(f"{path}: could not read it: {exc}") from exc


def _run_report(args: argparse.Namespace) -> int:
    output = args.output or args.result.with_suffix(".html")
    if output.suffix.lower() not in (".html", ".htm"):
        raise CommandError(f"--output {output}: expected an .html file name")
    output = check_output_path(output)
    result = load_result(args.result.expanduser())
    path = result.report(output, top=args.top, title=args.title)
    _say(f"wrote the report of {len(result):,} values to {path}")
    return EXIT_OK


_REPORT = Command(
    name="report",
    help="turn a saved result into a standalone HTML report",
    description=(
        "Write a standalone HTML report (Bokeh, inlined; opens without a "
        "network) of a saved result: a summary, the distribution of the "
        "values, the highest- and lowest-valued points with their 95% "
        "intervals, and the convergence trace of the run."
    ),
    epilog=(
        "examples:\n"
        "  daskval run --result values.npz && daskval report values.npz\n"
        "  daskval report values.csv -o report.html --top 20"
    ),
    add_arguments=_report_arguments,
    run=_run_report,
)


# -- daskval compare -------------------------------------------------------------
COMPARE_METHODS = (
    "tmc-shapley",
    "banzhaf",
    "beta-shapley",
    "data-oob",
    "loo",
    "knn-shapley",
)


def _compare_options() -> list[Option]:
    return [
        *_data_options(train_size=100, label_noise=0.2),
        Option(
            "methods",
            _method_list,
            list(COMPARE_METHODS),
            "comma-separated methods; the random baseline is always added "
            f"(default: {','.join(COMPARE_METHODS)})",
            "LIST",
        ),
        Option(
            "budget",
            _positive_int,
            1000,
            "model fits per method (default: 1000)",
            "FITS",
        ),
        *_CLUSTER_OPTIONS,
        Option(
            "output",
            Path,
            Path("daskval-compare.csv"),
            "the table: .csv or .parquet (default: ./daskval-compare.csv)",
            "FILE",
            "-o",
        ),
        Option(
            "plot",
            Path,
            Path("daskval-compare.html"),
            "the plot, standalone HTML (default: ./daskval-compare.html)",
            "HTML",
        ),
        Option(
            "png",
            Path,
            None,
            "also write the plot as PNG (needs playwright and chromium)",
            "FILE",
        ),
        Option(
            "curves",
            _choice(["yes", "no"], "yes or no"),
            "no",
            "also retrain with the highest-valued points removed (0-50%%) and "
            "plot the held-out scores (default: no)",
            "yes|no",
        ),
    ]


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    _add_options(parser, _compare_options())


def format_comparison(table: Any) -> list[str]:
    """The comparison table as aligned text lines, best first."""
    shown = table[
        ["f1", "auroc", "precision", "recall", "n_flagged", "n_evaluations", "seconds"]
    ].copy()
    lines = shown.to_string(
        float_format=lambda v: f"{v:.3f}",
        formatters={"seconds": "{:.1f}".format},
    ).splitlines()
    return lines


def _comparison_plot(comparison: Any, data: Any) -> Any:
    from bokeh.layouts import column, row

    from daskval import plot

    detection = plot.plot_detection(
        comparison.table,
        title=f"noisy-label detection: {data.name}, "
        f"{len(data.corrupted)} of {data.n_train} labels flipped",
    )
    best = comparison.table.index[0]
    panels = [
        detection,
        plot.plot_values_vs_quality(
            comparison.results[best],
            data.is_corrupted,
            quality_label="label",
            title=f"values of {best}",
        ),
    ]
    layout = [row(*panels)]
    if comparison.curves:
        layout.append(
            plot.plot_curves(
                comparison.curves,
                title="removing the highest-valued points first",
            )
        )
    return column(*layout)


def _run_compare(args: argparse.Namespace) -> int:
    from daskval.evaluate import check_method, compare_methods

    began = time.monotonic()
    args = resolve_options(args, _compare_options())
    output = check_table_path(args.output)
    if args.plot.suffix.lower() not in (".html", ".htm"):
        raise CommandError(f"--plot {args.plot}: expected an .html file name")
    plot_path = check_output_path(args.plot)
    png = None
    if args.png is not None:
        from daskval.plot import png_unavailable

        if args.png.suffix.lower() != ".png":
            raise CommandError(f"--png {args.png}: expected a .png file name")
        png = check_output_path(args.png)
        reason = png_unavailable()
        if reason is not None:
            raise CommandError(f"--png: {reason}")
    if not args.label_noise:
        raise CommandError("--label-noise must be above 0: nothing to detect")
    data = _experiment_data(args)
    model = _model(args, data.task)
    try:
        for method in args.methods:
            check_method(method, data.task)
    except ValueError as exc:
        raise CommandError(f"--methods: {exc}") from exc
    _say(
        f"daskval compare: {len(data.corrupted)} of the {data.n_train} training "
        f"labels of {data.name} corrupted; methods {', '.join(args.methods)} "
        f"and the random baseline, budget {args.budget:,} each"
    )

    def report(name: str, seconds: float) -> None:
        _say(f"  {name}: done in {seconds:.1f} s")

    with ExitStack() as stack:
        client = _connect(args, stack)
        comparison = compare_methods(
            data,
            args.methods,
            model=model,
            budget=args.budget,
            seed=args.seed,
            client=client,
            curves=args.curves == "yes",
            on_method=report,
        )
    _say("\nnoisy-label detection, best F1 first (then AUROC):")
    for line in format_comparison(comparison.table):
        _say(line)
    for method, note in comparison.table["note"].items():
        if note:
            _say(f"note: {method} has no scores: {note}")
    write_table(comparison.table, output)
    from daskval import plot

    layout = _comparison_plot(comparison, data)
    plot.save_html(layout, plot_path, title="daskval compare")
    _say(f"\nwrote the table to {output}")
    _say(f"wrote the plot to {plot_path}")
    if png is not None:
        plot.save_png(layout, png)
        _say(f"wrote the plot to {png}")
    _say(f"{time.monotonic() - began:.1f} s in all")
    return EXIT_OK


_COMPARE = Command(
    name="compare",
    help="rank methods by how well they find flipped labels (table + plot)",
    description=(
        "The noisy-label experiment: flip a fraction of a bundled dataset's "
        "training labels, value the points with each method, and flag the low "
        "cluster of a 1-D 2-means split of the values. Ranks the methods by "
        "the F1 score of the flags and the AUROC of the values (low = "
        "flipped), with a random valuation as the baseline row; writes the "
        "table (CSV or parquet) and a plot (HTML, optionally PNG)."
    ),
    epilog=(
        "examples:\n"
        "  daskval compare                                  # ~1-2 min on 2 cores\n"
        "  daskval compare --methods data-oob,knn-shapley --budget 300\n"
        "  daskval compare --dataset wine --label-noise 0.3 --curves yes\n"
        "  daskval compare --config compare.toml -o table.parquet --png plot.png"
    ),
    add_arguments=_compare_arguments,
    run=_run_compare,
)


#: The subcommands, in the order ``daskval --help`` lists them.
COMMANDS: tuple[Command, ...] = (_DEMO, _RUN, _REPORT, _COMPARE)


# -- entry point -----------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``daskval`` argument parser, one sub-parser per :data:`COMMANDS` entry."""
    from daskval._version import __version__

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
