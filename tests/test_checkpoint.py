"""Checkpoints: resume after a killed client, refusal of foreign or corrupt files,
interrupts, lost clients, atomic writes, and every method family."""

from __future__ import annotations

import _thread
import functools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client
from sklearn.linear_model import LogisticRegression

import daskval as dv
import daskval.checkpoint as ckpt
from daskval.accumulate import Moments, Partial, Sums
from daskval.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    run_identity,
    save_checkpoint,
)
from daskval.plan import initial_partial
from daskval.utility import EvalStats

TESTS = Path(__file__).parent


# -- games (module level: workers and the subprocess import them) --------------


def slow_game(players: np.ndarray, delay: float = 0.002) -> float:
    """A non-additive game with distinct values, slowed down to ``delay`` s."""
    time.sleep(delay)
    weights = np.arange(1.0, 33.0)
    total = float(weights[players].sum())
    return float(np.sqrt(total) + 0.05 * len(players) ** 2)


def game(n: int = 6, delay: float = 0.002) -> dv.FunctionUtility:
    return dv.FunctionUtility(functools.partial(slow_game, delay=delay), n)


def model_utility() -> dv.ModelUtility:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int)
    data = dv.Dataset(x[:8], y[:8], x[8:], y[8:])
    return dv.ModelUtility(LogisticRegression(), data)


# every method family: (name, factory of a fresh valuation)
FAMILIES: dict[str, Callable[[], dv.Valuation]] = {
    "permutation-shapley": lambda: dv.ShapleyValuation(
        game(), sampler=dv.PermutationSampler(), stop=dv.MaxSamples(150), seed=1
    ),
    "msr-banzhaf": lambda: dv.BanzhafValuation(
        game(), sampler=dv.MSRSampler(), stop=dv.MaxEvaluations(500), seed=2
    ),
    "stratified": lambda: dv.ShapleyValuation(
        game(), sampler=dv.StratifiedSampler(), stop=dv.MaxSamples(80), seed=3
    ),
    "regression": lambda: dv.ShapleyValuation(
        game(10), sampler=dv.RegressionSampler(), stop=dv.MaxSamples(240), seed=4
    ),
    "multi-semivalue": lambda: dv.SemivalueValuation(
        game(),
        [dv.Shapley(), dv.Banzhaf(), dv.Beta(4, 1)],
        stop=dv.MaxSamples(400),
        seed=5,
    ),
    "exact": lambda: dv.ShapleyValuation(
        game(6, delay=0.04), sampler=dv.ExactSampler()
    ),
    "loo": lambda: dv.LOOValuation(game(20, delay=0.1)),
    "model-utility": lambda: dv.BanzhafValuation(
        model_utility(), stop=dv.MaxSamples(300), seed=6
    ),
}


def _assert_same(resumed: dict[str, Any], reference: dict[str, Any]) -> None:
    assert list(resumed) == list(reference)
    for name, ref in reference.items():
        res = resumed[name]
        np.testing.assert_allclose(res.values, ref.values, rtol=0, atol=1e-12)
        np.testing.assert_allclose(res.stderr, ref.stderr, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(res.counts, ref.counts)
        assert res.n_samples == ref.n_samples
        assert res.n_evaluations == ref.n_evaluations
        assert res.status == ref.status == "completed"


# -- resume after a killed client ----------------------------------------------

_CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from distributed import Client
    import daskval as dv
    from test_checkpoint import game

    if __name__ == "__main__":
        client = Client({address!r}, set_as_default=False)
        valuation = dv.ShapleyValuation(game(), stop=dv.MaxSamples({budget}), seed=7)
        if {resume!r}:
            valuation.fit(client=client, resume={path!r})
            valuation.result_.save({out!r})
        else:
            valuation.fit(
                client=client, checkpoint={path!r}, checkpoint_interval=0.2, memo=False
            )
        client.close()
    """
)


def _client_script(client: Client, budget: int, path: Path, out: Path | None) -> str:
    return _CLIENT_SCRIPT.format(
        tests=str(TESTS),
        address=client.scheduler_info()["address"],
        budget=budget,
        path=str(path),
        resume=out is not None,
        out=str(out),
    )


def test_resume_after_the_client_process_is_killed(
    client: Client, tmp_path: Path
) -> None:
    budget, path = 400, tmp_path / "killed.npz"
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _client_script(client, budget, path, None)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists() and load_checkpoint(path).n_samples > 0:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]

    saved = load_checkpoint(path)
    assert 0 < saved.n_samples < budget  # some, but not all, of the work
    assert saved.status == "running"

    # resume in a new process, which saves its result for comparison
    out = tmp_path / "resumed.npz"
    subprocess.run(
        [sys.executable, "-c", _client_script(client, budget, path, out)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    resumed = dv.ValuationResult.load(out)
    reference = dv.ShapleyValuation(game(), stop=dv.MaxSamples(budget), seed=7)
    reference.fit(client=client)
    _assert_same({"shapley": resumed}, reference.results_)
    meta = resumed.metadata["checkpoint"]
    assert meta["resumed_samples"] == saved.n_samples
    assert meta["path"] == str(path)  # the resumed file is kept up to date
    assert load_checkpoint(path).n_samples == budget


# -- every method family: interrupt, then resume --------------------------------


def _interrupt(
    valuation: dv.Valuation, client: Client, path: Path, samples_per_task: int
) -> dv.ValuationResult:
    handle = valuation.submit(
        client=client,
        checkpoint=path,
        checkpoint_interval=0.05,
        samples_per_task=samples_per_task,
        memo=False,  # the memo would make a repeated run too quick to interrupt
    )
    deadline = time.monotonic() + 30
    while handle.progress["n_samples"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    handle.cancel(status="interrupted")
    return handle.result()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_resumes_to_the_uninterrupted_values(
    family: str, client: Client, tmp_path: Path
) -> None:
    make, path = FAMILIES[family], tmp_path / f"{family}.npz"
    per_task = 1 if family == "loo" else 4
    partial = _interrupt(make(), client, path, per_task)
    saved = load_checkpoint(path)
    assert saved.status == partial.status == "interrupted"
    # the final checkpoint holds the newest merged state, which the result shows
    assert saved.n_samples == partial.n_samples > 0
    assert saved.n_evaluations == partial.n_evaluations
    assert partial.metadata["checkpoint"]["path"] == str(path)

    resumed = make().fit(client=client, resume=path, samples_per_task=per_task + 1)
    reference = make().fit(client=client)
    _assert_same(resumed.results_, reference.results_)
    assert saved.n_samples < reference.result_.n_samples  # type: ignore[union-attr]
    # the resumed run kept the file up to date: resuming a finished run is a no-op
    assert load_checkpoint(path).status == "completed"
    again = make().fit(client=client, resume=path)
    _assert_same(again.results_, reference.results_)


def test_keyboard_interrupt_writes_a_final_checkpoint(
    client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "interrupted.npz"
    valuation = dv.ShapleyValuation(game(), stop=dv.MaxSamples(10**6), seed=8)
    timer = threading.Timer(2.0, _thread.interrupt_main)
    timer.start()
    try:
        valuation.fit(
            client=client,
            checkpoint=path,
            checkpoint_interval=3600,
            memo=False,
            samples_per_task=2,
        )
    finally:
        timer.cancel()
    result = valuation.result_
    assert result is not None and result.status == "interrupted"
    assert 0 < result.n_samples < 10**6
    saved = load_checkpoint(path)
    assert saved.status == "interrupted"
    assert saved.n_samples == result.n_samples
    assert result.metadata["checkpoint"]["path"] == str(path)


# -- lost client ------------------------------------------------------------------


@pytest.mark.parametrize("checkpointing", [True, False])
def test_a_lost_client_says_where_to_resume(
    client: Client, tmp_path: Path, checkpointing: bool
) -> None:
    path = tmp_path / "lost.npz"
    own = Client(client.scheduler_info()["address"], set_as_default=False)
    valuation = dv.ShapleyValuation(game(), stop=dv.MaxSamples(10**6), seed=9)
    handle = valuation.submit(
        client=own,
        checkpoint=path if checkpointing else None,
        checkpoint_interval=0.1,
        memo=False,
    )
    deadline = time.monotonic() + 30
    while handle.progress["n_samples"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    own.close()
    with pytest.raises(dv.ValuationError) as info:
        handle.result(timeout=60)
    message = str(info.value)
    if checkpointing:
        assert f"fit(resume={str(path)!r})" in message
        assert load_checkpoint(path).n_samples > 0
    else:
        assert "checkpoint=True" in message
        assert not path.exists()


# -- refusal of other runs --------------------------------------------------------


def _saved_of(valuation: dv.Valuation, path: Path) -> Path:
    """A checkpoint of ``valuation`` at its empty state (no cluster needed)."""
    plan = valuation.make_plan()
    state = initial_partial(plan, EvalStats(n_evaluations=len(plan.anchors())))
    save_checkpoint(
        path,
        Checkpoint(
            run_identity(valuation, plan),
            state,
            np.zeros(len(plan.anchors())),
            len(plan.anchors()),
        ),
    )
    return path


@pytest.mark.parametrize(
    ("other", "named"),
    [
        (lambda: dv.ShapleyValuation(game(), stop=dv.MaxSamples(50), seed=1), "seed"),
        (lambda: dv.ShapleyValuation(game(), stop=dv.MaxSamples(51), seed=0), "stop"),
        (
            lambda: dv.ShapleyValuation(
                game(), sampler=dv.AntitheticSampler(), stop=dv.MaxSamples(50), seed=0
            ),
            "sampler",
        ),
        (
            lambda: dv.BanzhafValuation(game(), stop=dv.MaxSamples(50), seed=0),
            "method",
        ),
        (
            lambda: dv.ShapleyValuation(
                game(delay=0.001), stop=dv.MaxSamples(50), seed=0
            ),
            "utility",
        ),
        (
            lambda: dv.ShapleyValuation(game(7), stop=dv.MaxSamples(50), seed=0),
            "n_players",
        ),
    ],
)
def test_a_checkpoint_of_another_run_is_refused(
    client: Client, tmp_path: Path, other: Callable[[], dv.Valuation], named: str
) -> None:
    path = _saved_of(
        dv.ShapleyValuation(game(), stop=dv.MaxSamples(50), seed=0),
        tmp_path / "run.npz",
    )
    valuation = other()
    with pytest.raises(CheckpointError, match=rf"resume=.*another run.*\b{named}\b"):
        valuation.submit(client=client, resume=path)


def test_checkpoint_arguments_are_checked_before_any_cluster_work(
    tmp_path: Path,
) -> None:
    # client=None would start an embedded cluster: each call must fail first
    valuation = dv.ShapleyValuation(game(), stop=dv.MaxSamples(5), seed=0)
    with pytest.raises(TypeError, match="checkpoint must be"):
        valuation.fit(checkpoint=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="checkpoint_interval"):
        valuation.fit(checkpoint=tmp_path / "c.npz", checkpoint_interval=0)
    with pytest.raises(CheckpointError, match=r"resume=.*no checkpoint file"):
        valuation.fit(resume=tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=r"checkpoint=.*is a directory"):
        valuation.fit(checkpoint=tmp_path)


def test_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    valuation = dv.ShapleyValuation(game(), stop=dv.MaxSamples(5), seed=11)
    fingerprint = valuation.utility.fingerprint()[:12]
    assert ckpt.default_checkpoint_path(valuation) == (
        tmp_path.resolve() / "daskval-checkpoints" / f"shapley-11-{fingerprint}.npz"
    )


# -- corrupt files, code execution, atomic writes ---------------------------------


def _sample_checkpoint(scale: float = 1.0) -> Checkpoint:
    stats = EvalStats(
        n_evaluations=12,
        n_failed=1,
        first_failure="ValueError: boom",
        warnings={"UserWarning: careful": 2},
        failures={"ValueError: boom": 1},
        memo_hits=3,
        memo_misses=9,
    )
    moments = Moments(np.array([2, 3]), np.array([1.0, 2.0]) * scale, np.ones(2))
    strata = Moments(np.ones((3, 2), np.int64), np.ones((3, 2)), np.zeros((3, 2)))
    sums = Sums({"zz": np.eye(2) * scale, "count": np.array([4.0])})
    state = Partial(
        0,
        5,
        {"marginals": moments, "strata": strata, "regression": sums},
        stats,
        None,
        1.5,
        True,
    )
    return Checkpoint(
        {"method": {"seed": 0}},
        state,
        np.array([0.0, 1.0]),
        2,
        3.0,
        failed_samples={3: "KilledWorker: sample 3"},
    )


def test_a_checkpoint_round_trips(tmp_path: Path) -> None:
    original = _sample_checkpoint()
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.npz", original))
    assert loaded.identity == original.identity
    assert loaded.state.eval_stats == original.state.eval_stats
    assert (loaded.state.start, loaded.state.stop, loaded.state.exhausted) == (
        0,
        5,
        True,
    )
    assert loaded.state.compute_seconds == 1.5
    for name, statistic in original.state.moments.items():
        restored = loaded.state.moments[name]
        assert type(restored) is type(statistic)
        for key, array in vars(statistic).items():
            if isinstance(array, dict):
                for k, a in array.items():
                    np.testing.assert_array_equal(vars(restored)[key][k], a)
            else:
                np.testing.assert_array_equal(vars(restored)[key], array)
    np.testing.assert_array_equal(loaded.anchors, [0.0, 1.0])
    assert (loaded.anchor_evaluations, loaded.elapsed_seconds) == (2, 3.0)
    assert loaded.failed_samples == {3: "KilledWorker: sample 3"}


def _arrays(statistic: Any) -> dict[str, bytes]:
    if isinstance(statistic, Moments):
        return {k: getattr(statistic, k).tobytes() for k in ("count", "total", "m2")}
    return {k: a.tobytes() for k, a in statistic.arrays.items()}


def test_a_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.npz", _sample_checkpoint())
    data = path.read_bytes()
    for size in (0, 10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:size])
        with pytest.raises(CheckpointError):
            load_checkpoint(path)


def test_a_tampered_checkpoint_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.npz", _sample_checkpoint())
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["s0_total"] = arrays["s0_total"] + 1e-9  # a valid zip, edited numbers
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        load_checkpoint(path)
    # a flipped byte anywhere is refused, unless it only hits zip bookkeeping
    # that no content depends on (a timestamp): then the content is intact
    good_path = save_checkpoint(tmp_path / "d.npz", _sample_checkpoint())
    good, intact = good_path.read_bytes(), load_checkpoint(good_path)
    refused = 0
    for offset in range(0, len(good), max(1, len(good) // 200)):
        flipped = bytearray(good)
        flipped[offset] ^= 0xFF
        path.write_bytes(bytes(flipped))
        try:
            loaded = load_checkpoint(path)
        except CheckpointError:
            refused += 1
            continue
        assert loaded.identity == intact.identity
        assert loaded.state.eval_stats == intact.state.eval_stats
        for name, statistic in intact.state.moments.items():
            assert _arrays(loaded.state.moments[name]) == _arrays(statistic)
    assert refused > 150


_EXECUTED: list[str] = []


def _mark_executed() -> None:
    _EXECUTED.append("unpickled")


class _Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_mark_executed, ())


def test_loading_never_executes_code(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.npz", _sample_checkpoint())
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["s0_total"] = np.array([_Payload(), _Payload()], dtype=object)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)  # object arrays are pickled by savez
    with pytest.raises(CheckpointError, match=r"never unpickled|numbers only"):
        load_checkpoint(path)
    # a pickle posing as a checkpoint
    import pickle

    path.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert _EXECUTED == []


def test_a_crash_while_writing_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "c.npz", _sample_checkpoint(1.0))
    before = path.read_bytes()

    def crash(fh: Any, **arrays: Any) -> None:
        fh.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _sample_checkpoint(2.0))
    monkeypatch.undo()
    assert path.read_bytes() == before
    loaded = load_checkpoint(path)
    total = loaded.state.moments["marginals"].total  # type: ignore[union-attr]
    np.testing.assert_array_equal(total, [1.0, 2.0])
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temp file left


def test_a_failing_periodic_write_does_not_stop_the_run(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(path: Any, checkpoint: Checkpoint) -> Path:
        raise OSError("read-only file system")

    monkeypatch.setattr("daskval.engine.run.save_checkpoint", fail)
    valuation = dv.ShapleyValuation(game(delay=0), stop=dv.MaxSamples(20), seed=0)
    result = valuation.fit(client=client, checkpoint=tmp_path / "c.npz").result_
    assert result is not None and result.status == "completed"
    assert "read-only" in result.metadata["checkpoint"]["error"]
