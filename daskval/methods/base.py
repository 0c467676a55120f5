"""The base class of valuation methods: validation up front, then the engine."""

from __future__ import annotations

import numbers
import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from daskval.plan import Plan, RunSpec
from daskval.result import ValuationResult
from daskval.stopping import StoppingCriterion
from daskval.utility import Utility

if TYPE_CHECKING:
    from daskval.engine.memo import MemoConfig
    from daskval.engine.run import ValuationHandle

__all__ = ["Valuation"]


def _check_seed(seed: Any) -> int:
    if seed is None:
        # recorded in the result's metadata, so the run can be repeated
        entropy = np.random.SeedSequence().entropy
        assert isinstance(entropy, int)
        return entropy % (2**63)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"seed must be a non-negative integer or None, got {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed}")
    return int(seed)


class Valuation(ABC):
    """A valuation method: what to compute, checked before any cluster work.

    Subclasses implement :meth:`make_plan`; :meth:`submit` and :meth:`fit`
    hand the plan to the engine.
    """

    method_name = "valuation"
    #: whether runs go through the workers' memo when ``memo=None``
    default_memo = True

    def __init__(
        self,
        utility: Utility,
        *,
        stop: StoppingCriterion | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(utility, Utility):
            raise TypeError(
                "utility must be a daskval Utility (ModelUtility, "
                f"FunctionUtility, ...), got {type(utility).__name__}"
            )
        if stop is not None and not isinstance(stop, StoppingCriterion):
            raise TypeError(
                "stop must be a stopping criterion such as MaxSamples(100),"
                f" got {type(stop).__name__}"
            )
        self.utility = utility
        self.stop = stop
        self.seed = _check_seed(seed)
        self._result: ValuationResult | None = None
        self.results_: dict[str, ValuationResult] = {}

    @property
    def result_(self) -> ValuationResult:
        """The result of the last :meth:`fit`.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before :meth:`fit` (an AttributeError too, as scikit-learn's is).
        """
        if self._result is None:
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(
                f"This {type(self).__name__} has no result yet: call fit() first "
                "(or submit() and the handle's result())"
            )
        return self._result

    @result_.setter
    def result_(self, result: ValuationResult) -> None:
        self._result = result

    @abstractmethod
    def make_plan(self) -> Plan:
        """The plan of one run (a fresh object each time)."""

    def run_spec(self) -> RunSpec:
        """What the engine runs: a fresh plan and this method's description
        (raises on arguments the plan refuses, before any cluster work)."""
        return RunSpec(
            plan=self.make_plan(),
            utility=self.utility,
            stop=self.stop,
            method_name=self.method_name,
            seed=self.seed,
            description=self.describe(),
            default_memo=self.default_memo,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method_name,
            "seed": self.seed,
            "stop": None if self.stop is None else self.stop.describe(),
        }

    def submit(
        self,
        client: Any = None,
        *,
        samples_per_task: int | None = None,
        memo: bool | MemoConfig | None = None,
        checkpoint: str | os.PathLike[str] | bool | None = None,
        checkpoint_interval: float = 60.0,
        resume: str | os.PathLike[str] | bool | None = None,
        progress: bool | None = False,
        dashboard: bool | str = True,
    ) -> ValuationHandle:
        """Start the valuation without blocking; returns a handle.

        Parameters
        ----------
        client : distributed.Client, optional
            The cluster to run on. Defaults to the active Dask client, or
            else an embedded LocalCluster started once per process.
        samples_per_task : int, optional
            Fix the number of samples per task instead of sizing tasks from
            the measured evaluation time (values do not depend on it).
        memo : bool, MemoConfig or None
            Evaluate through the workers' memo, which reuses u(S) across
            points, samplers, methods and fits on the same cluster; ``False``
            bypasses it. ``None`` (default): the method's default, on for
            every method that evaluates coalitions (``default_memo``; off
            for KNN-Shapley's closed form). A :class:`~daskval.MemoConfig` also sets
            the memo's memory bound and disk spill on every worker. Values,
            budgets and failure counts are the same either way.
        checkpoint : str, PathLike or bool, optional
            Save the merged state to this file every ``checkpoint_interval``
            seconds, at the end of the run, on KeyboardInterrupt or cancel,
            and when the run fails (atomically: a crash mid-write leaves the
            previous checkpoint; npz + JSON, never pickle; see
            :mod:`daskval.checkpoint`). ``True`` writes to
            ``./daskval-checkpoints/<method>-<seed>-<fingerprint12>.npz``
            under the working directory. ``None`` (default): no checkpoints,
            unless resuming, when the resumed file is updated. ``False``:
            none at all.
        checkpoint_interval : float
            Seconds between checkpoints (default 60).
        resume : str, PathLike or bool, optional
            Continue from this checkpoint (``True``: the default location)
            instead of sample 0. It must be of the same run (utility,
            method, sampler, semivalues, seed and stopping criterion, same
            daskval version), else a :class:`~daskval.checkpoint.CheckpointError`
            names what differs. The anchors are not evaluated again; the
            result equals the uninterrupted run's (to 1e-12), with the same
            sample and evaluation counts. Time budgets count the time before
            the checkpoint too.
        progress : bool or None
            Draw a console progress bar (completion of the stopping
            criterion, evaluations/s, ETA) on stderr while the run goes on,
            with the dashboard's address above it. ``False`` (default for
            ``submit``): nothing is printed; ``None`` (default for
            :meth:`fit`): a bar in terminals and Jupyter notebooks only, or
            as the ``DASKVAL_PROGRESS`` environment variable (1 or 0) says.
        dashboard : bool or str
            ``True`` (default): publish progress events and show the run on
            the ``/daskval`` page of the scheduler's Dask dashboard, or, when
            the scheduler cannot serve it (no daskval there, no dashboard),
            on a Bokeh server in this process bound to 127.0.0.1 (another
            address through ``DASKVAL_DASHBOARD_ADDRESS=host:port``).
            ``"scheduler"``: the scheduler's page or an error; ``"client"``:
            always the server in this process; ``False``: no events, no
            page. The address is ``handle.dashboard_link``.
        """
        from daskval.engine.run import start_run

        return start_run(
            self.run_spec(),
            client=client,
            samples_per_task=samples_per_task,
            memo=memo,
            checkpoint=checkpoint,
            checkpoint_interval=checkpoint_interval,
            resume=resume,
            progress=progress,
            dashboard=dashboard,
        )

    def fit(
        self,
        client: Any = None,
        *,
        samples_per_task: int | None = None,
        memo: bool | MemoConfig | None = None,
        checkpoint: str | os.PathLike[str] | bool | None = None,
        checkpoint_interval: float = 60.0,
        resume: str | os.PathLike[str] | bool | None = None,
        progress: bool | None = None,
        dashboard: bool | str = True,
    ) -> Valuation:
        """Run the valuation to its end, set ``result_`` and return ``self``.

        ``results_`` maps every output's name to its result (one entry, the
        method's name, unless the method estimates several values at once).
        The arguments are those of :meth:`submit`, except that ``progress``
        defaults to None: a progress bar in terminals and notebooks, nothing
        in pipes, logs and tests. The dashboard's address is printed (on
        stderr) above the bar, or once per process without one; pass
        ``progress=False`` for silence. A KeyboardInterrupt stops
        the run and keeps the samples merged so far (status
        ``"interrupted"``), saved to the checkpoint when there is one
        (``result_.metadata["checkpoint"]["path"]``).
        """
        handle = self.submit(
            client,
            samples_per_task=samples_per_task,
            memo=memo,
            checkpoint=checkpoint,
            checkpoint_interval=checkpoint_interval,
            resume=resume,
            progress=progress,
            dashboard=dashboard,
        )
        self.results_ = handle.results()
        self.result_ = next(iter(self.results_.values()))
        return self
