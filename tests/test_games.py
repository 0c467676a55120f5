"""The analytic games: closed forms against brute force and the literature.

No cluster here. The reference Shapley values are computed from a table of
all 2^n utilities by averaging marginal contributions over all n!
permutations; daskval's own weight code is never used.
"""

from __future__ import annotations

import itertools
import math
import pickle

import cloudpickle
import numpy as np
import pytest

import daskval as dv
from daskval.games import (
    AdditiveGame,
    AirportGame,
    Game,
    GlovesGame,
    MinerGame,
    SymmetricVotingGame,
    WeightedVotingGame,
)

GAMES = [
    SymmetricVotingGame(2),
    SymmetricVotingGame(6),
    WeightedVotingGame([1, 2, 3, 4, 5, 6, 7]),
    WeightedVotingGame([4, 3, 2, 2, 1, 0], quota=6),  # a null player, a set quota
    GlovesGame(1, 1),
    GlovesGame(2, 3),
    GlovesGame(4, 3),
    GlovesGame(1, 5),
    AdditiveGame([0.5, -1.2, 3.0, 0.0, 2.2], offset=1.5),
    AirportGame([3, 1, 4, 1, 5, 9, 2]),  # a tie
    AirportGame([0.0, 0.5, 1.25, 2.0, 3.5]),  # a zero cost
    MinerGame(5),
    MinerGame(6),
]


def utility_table(game: Game) -> list[float]:
    """u of every coalition, indexed by bitmask (bit i set: player i is in)."""
    return [
        game([i for i in range(game.n) if mask >> i & 1]) for mask in range(1 << game.n)
    ]


def shapley_by_permutations(game: Game) -> np.ndarray:
    """The mean marginal contribution of each player over all n! orders."""
    table = utility_table(game)
    totals = [0.0] * game.n
    for order in itertools.permutations(range(game.n)):
        mask = 0
        for player in order:
            totals[player] += table[mask | 1 << player] - table[mask]
            mask |= 1 << player
    return np.array(totals) / math.factorial(game.n)


@pytest.mark.parametrize("game", GAMES, ids=repr)
def test_closed_form_equals_the_mean_over_all_permutations(game: Game) -> None:
    np.testing.assert_allclose(
        game.shapley_values(), shapley_by_permutations(game), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("game", GAMES, ids=repr)
def test_closed_form_is_efficient(game: Game) -> None:
    everyone, nobody = np.arange(game.n), np.array([], dtype=int)
    assert math.isclose(
        game.shapley_values().sum(), game(everyone) - game(nobody), abs_tol=1e-12
    )


def _published_tolerance(text: str) -> float:
    """One unit in the last digit of a published decimal."""
    return 10.0 ** -len(text.split(".")[1])


def test_airport_game_of_castro_2009() -> None:
    # Castro, Gomez & Tejada (2009), section 4.3 (as tabulated in pyDVL's games):
    # the value of the players needing runway cost 1, 2, ..., 10.
    published = [
        "0.01",
        "0.020869565",
        "0.033369565",
        "0.046883079",
        "0.063549745",
        "0.082780515",
        "0.106036329",
        "0.139369662",
        "0.189369662",
        "0.289369662",
    ]
    game = AirportGame.castro2009()
    values = game.shapley_values()
    assert game.n == 100
    for cost, text in enumerate(published, start=1):
        group = values[game.costs == cost]
        assert np.ptp(group) == 0
        assert abs(group[0] - float(text)) <= _published_tolerance(text)
    assert math.isclose(values.sum(), 10.0, abs_tol=1e-12)  # u(N) = max cost


def test_asymmetric_voting_game_of_castro_2009() -> None:
    # Castro, Gomez & Tejada (2009), section 4.2 (as tabulated in pyDVL's games):
    # the value of the players of each weight, to four significant digits.
    published = {
        45: "0.08831",
        41: "0.07973",
        27: "0.05096",
        26: "0.04898",
        25: "0.047",
        21: "0.03917",
        17: "0.03147",
        14: "0.02577",
        13: "0.02388",
        12: "0.022",
        11: "0.02013",
        10: "0.01827",
        9: "0.01641",
        8: "0.01456",
        7: "0.01272",
        6: "0.01088",
        5: "0.009053",
        4: "0.00723",
        3: "0.005412",
    }
    game = WeightedVotingGame.castro2009()
    values = game.shapley_values()
    assert game.n == 51
    for weight, text in published.items():
        group = values[game.weights == weight]
        assert np.ptp(group) < 1e-15
        assert abs(group[0] - float(text)) <= _published_tolerance(text)
    assert math.isclose(values.sum(), 1.0, abs_tol=1e-12)


def test_gloves_agree_with_pydvl_rounded_table() -> None:
    # pyDVL's ShoesGame table (left value for left, right <= 4, 3 decimals)
    table = {
        (1, 2): 0.667,
        (1, 3): 0.75,
        (1, 4): 0.8,
        (2, 1): 0.167,
        (2, 3): 0.65,
        (2, 4): 0.733,
        (3, 1): 0.083,
        (3, 2): 0.233,
        (3, 4): 0.638,
        (4, 1): 0.050,
        (4, 2): 0.133,
        (4, 3): 0.271,
    }
    for (left, right), value in table.items():
        values = GlovesGame(left, right).shapley_values()
        assert abs(values[0] - value) <= 5e-4
        assert np.ptp(values[:left]) == 0 and np.ptp(values[left:]) == 0


def test_one_glove_per_side_is_worth_one_half() -> None:
    np.testing.assert_array_equal(GlovesGame(1, 1).shapley_values(), [0.5, 0.5])
    np.testing.assert_allclose(GlovesGame(7, 7).shapley_values(), 0.5, atol=1e-15)


def test_airport_values_are_distinct_for_distinct_costs() -> None:
    values = AirportGame([1.0, 2.0, 4.0, 7.0, 11.0]).shapley_values()
    assert np.all(np.diff(values) > 0)


@pytest.mark.parametrize("game", GAMES[::3], ids=repr)
def test_games_are_utilities_that_pickle_by_reference(game: Game) -> None:
    assert isinstance(game, dv.Utility)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        blob = dumps(game)
        assert b"daskval.games" in blob  # by reference: workers import the module
        copy = pickle.loads(blob)
        assert copy.fingerprint() == game.fingerprint()
        assert utility_table(copy) == utility_table(game)


def test_fingerprints_identify_the_game() -> None:
    prints = {g.fingerprint() for g in GAMES}
    assert len(prints) == len(GAMES)
    assert GlovesGame(2, 3).fingerprint() == GlovesGame(2, 3).fingerprint()
    assert GlovesGame(2, 3).fingerprint() != GlovesGame(3, 2).fingerprint()
    assert MinerGame(4).fingerprint() != SymmetricVotingGame(4).fingerprint()
    assert (
        AdditiveGame([1.0, 2.0]).fingerprint()
        != AdditiveGame([1.0, 2.0], offset=1.0).fingerprint()
    )


def test_evaluations_are_counted() -> None:
    stats = dv.EvalStats()
    game = AirportGame([1.0, 2.0, 3.0])
    assert game.evaluate(np.array([0, 2]), stats) == 3.0
    assert game.evaluate(np.array([], dtype=np.intp), stats) == 0.0
    assert stats.n_evaluations == 2 and stats.n_failed == 0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SymmetricVotingGame(5), "even"),
        (lambda: SymmetricVotingGame(0), "n must be >= 2"),
        (lambda: MinerGame(1.5), "n must be an integer"),  # type: ignore[arg-type]
        (lambda: GlovesGame(0, 3), "n_left"),
        (lambda: WeightedVotingGame([1.5, 2]), "integers"),
        (lambda: WeightedVotingGame([1, -2]), "non-negative"),
        (lambda: WeightedVotingGame([1, 2], quota=float("nan")), "quota"),
        (lambda: AirportGame([1.0, -1.0]), "costs"),
        (lambda: AirportGame([]), "costs"),
        (lambda: AdditiveGame([1.0, float("inf")]), "weights"),
    ],
)
def test_bad_parameters_are_refused(make: object, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        make()  # type: ignore[operator]
