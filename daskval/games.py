"""Analytic games: cooperative games whose Shapley values are known in closed form.

They serve as ground truth for tests, demos and documentation. Every game is a
:class:`~daskval.utility.Utility` (so it can be valued directly, on any
cluster: the classes live at module level and pickle by reference) and has a
:meth:`Game.shapley_values` method that computes the values from a formula of
the literature, never by enumerating coalitions or permutations.

=====================  =====================================  ==========================
Game                   u(S)                                   Shapley value
=====================  =====================================  ==========================
SymmetricVotingGame    1 if |S| > n/2                         1/n
WeightedVotingGame     1 if sum of weights in S > quota       generating functions
GlovesGame             min(|S ∩ L|, |S ∩ R|)                  sum over coalition sizes
AdditiveGame           offset + sum of weights in S           the weights
AirportGame            max cost in S (0 for S empty)          Littlechild & Owen (1973)
MinerGame              floor(|S| / 2)                         floor(n/2) / n
=====================  =====================================  ==========================

References
----------
.. [1] Shapley, L. S. (1953). A value for n-person games. In *Contributions to
   the Theory of Games II*, Annals of Mathematics Studies 28, pp. 307-317.
.. [2] Castro, J., Gómez, D. and Tejada, J. (2009). Polynomial calculation of
   the Shapley value based on sampling. *Computers & Operations Research*
   36(5), pp. 1726-1730. (Symmetric and asymmetric voting, shoes, airport.)
.. [3] Littlechild, S. C. and Owen, G. (1973). A simple expression for the
   Shapley value in a special case. *Management Science* 20(3), pp. 370-372.
.. [4] Mann, I. and Shapley, L. S. (1962). Values of large games, VI:
   evaluating the Electoral College exactly. RAND memorandum RM-3158-PR.
   (Exact Shapley values of weighted majority games by generating functions.)
.. [5] Shapley, L. S. and Shubik, M. (1969). On market games. *Journal of
   Economic Theory* 1(1), pp. 9-25. (Glove markets.)
.. [6] Yan, T. and Procaccia, A. D. (2021). If you like Shapley then you'll
   love the core. *AAAI* 35(6), pp. 5751-5759. (The miner game.)
"""

from __future__ import annotations

import hashlib
import math
from abc import abstractmethod
from typing import Any

import numpy as np

from daskval.utility import EvalStats, Utility

__all__ = [
    "AdditiveGame",
    "AirportGame",
    "Game",
    "GlovesGame",
    "MinerGame",
    "SymmetricVotingGame",
    "WeightedVotingGame",
]


def _check_players(n: Any, name: str, minimum: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(n).__name__}")
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return int(n)


def _check_vector(values: Any, name: str, *, non_negative: bool) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if non_negative and (array < 0).any():
        raise ValueError(f"{name} must be non-negative")
    return array


class Game(Utility):
    """A cooperative game over players ``0 .. n-1`` with known Shapley values.

    Subclasses implement :meth:`value` (the utility of a coalition),
    :meth:`shapley_values` (from a closed form) and :meth:`params` (what
    identifies the game, for the fingerprint).

    Attributes
    ----------
    n : int
        The number of players.
    default : float
        Unused by games (they never fail); present for the Utility protocol.
    """

    n: int
    default: float = 0.0

    @abstractmethod
    def value(self, players: np.ndarray) -> float:
        """u(players) for an integer array of distinct player indices."""

    @abstractmethod
    def shapley_values(self) -> np.ndarray:
        """The exact Shapley value of every player, from a closed form."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The parameters that define the game (numbers, lists)."""

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        stats.n_evaluations += 1
        return float(self.value(players))

    def fingerprint(self) -> str:
        text = f"daskval.games/1|{type(self).__qualname__}|{self.params()!r}"
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "n": self.n, **self.params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class SymmetricVotingGame(Game):
    """Majority voting among equal voters: u(S) = 1 if |S| > n/2, else 0.

    Castro et al. (2009) [2]_, section 4.1. All players are symmetric and
    u(N) - u(empty) = 1, so symmetry and efficiency give a Shapley value of
    1/n to each player.

    Parameters
    ----------
    n : int
        The number of players, even and >= 2.
    """

    def __init__(self, n: int) -> None:
        self.n = _check_players(n, "n", 2)
        if self.n % 2:
            raise ValueError(f"n must be even for the symmetric voting game, got {n}")

    def value(self, players: np.ndarray) -> float:
        return 1.0 if 2 * len(players) > self.n else 0.0

    def shapley_values(self) -> np.ndarray:
        return np.full(self.n, 1.0 / self.n)

    def params(self) -> dict[str, Any]:
        return {"n": self.n}


class WeightedVotingGame(Game):
    """Weighted majority voting: u(S) = 1 if the weights of S sum above ``quota``.

    The asymmetric voting game of Castro et al. (2009) [2]_, section 4.2, is
    the instance :meth:`castro2009`.

    Parameters
    ----------
    weights : sequence of int
        Non-negative integer voting weights, one per player.
    quota : float, optional
        A coalition wins when its total weight is strictly greater than the
        quota. Defaults to half the total weight (a simple majority).

    Notes
    -----
    Player i is pivotal for a coalition S of others when
    ``w(S) <= quota < w(S) + w_i``; its Shapley value is the sum over such S of
    ``|S|! (n - |S| - 1)! / n!``. The number of coalitions of the other players
    with each size k and each total weight s is the coefficient of
    ``x^k y^s`` in ``prod_{j != i} (1 + x y^{w_j})``, computed by the
    generating-function recursion of Mann & Shapley (1962) [4]_ in
    O(n^3 W) operations (W the total weight); the counts are exact integers
    for up to 63 players.
    """

    def __init__(self, weights: Any, quota: float | None = None) -> None:
        w = _check_vector(weights, "weights", non_negative=True)
        if not np.array_equal(w, np.round(w)):
            raise ValueError("weights must be integers (the exact values need them)")
        self.weights = w.astype(np.int64)
        self.n = len(self.weights)
        total = int(self.weights.sum())
        if quota is None:
            quota = total / 2
        if isinstance(quota, bool) or not np.isfinite(quota):
            raise ValueError(f"quota must be a finite number, got {quota!r}")
        self.quota = float(quota)

    @classmethod
    def castro2009(cls) -> WeightedVotingGame:
        """The 51-player asymmetric voting game of Castro et al. (2009), 4.2."""
        groups = [
            (45, 1),
            (41, 1),
            (27, 1),
            (26, 2),
            (25, 1),
            (21, 1),
            (17, 2),
            (14, 1),
            (13, 2),
            (12, 3),
            (11, 1),
            (10, 4),
            (9, 4),
            (8, 2),
            (7, 4),
            (6, 4),
            (5, 1),
            (4, 9),
            (3, 7),
        ]
        return cls([w for w, count in groups for _ in range(count)])

    def value(self, players: np.ndarray) -> float:
        return 1.0 if self.weights[players].sum() > self.quota else 0.0

    def shapley_values(self) -> np.ndarray:
        n, weights = self.n, self.weights
        total = int(weights.sum())
        # weight of a coalition of k others: k! (n - k - 1)! / n!
        size_weight = np.array([1.0 / (n * math.comb(n - 1, k)) for k in range(n)])
        sums = np.arange(total + 1)
        # C(n-1, k) fits in int64 up to n = 63; beyond, float counts (rel. 1e-16)
        count_type = np.int64 if n <= 63 else np.float64
        values = np.zeros(n)
        for i in range(n):
            # counts[k, s]: coalitions of the players other than i, size k, weight s
            counts = np.zeros((n, total + 1), dtype=count_type)
            counts[0, 0] = 1
            for j in range(n):
                if j == i:
                    continue
                w = int(weights[j])
                counts[1:, w:] = counts[1:, w:] + counts[:-1, : total + 1 - w]
            pivotal = (sums <= self.quota) & (sums + weights[i] > self.quota)
            per_size = counts[:, pivotal].sum(axis=1).astype(float)
            values[i] = math.fsum(per_size * size_weight)
        return values

    def params(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist(), "quota": self.quota}


class GlovesGame(Game):
    """The glove (or shoes) market: u(S) = min(|S ∩ L|, |S ∩ R|).

    Players ``0 .. n_left-1`` hold a left glove, the others a right glove; a
    coalition is worth the number of pairs it can make (Shapley & Shubik,
    1969 [5]_; the "shoes game" of Castro et al., 2009 [2]_).

    Parameters
    ----------
    n_left, n_right : int
        The numbers of left-glove and right-glove holders, each >= 1.

    Notes
    -----
    A left glove adds a pair to a coalition of ``a`` other left and ``b``
    right holders exactly when ``b > a``. Counting such coalitions by their
    composition, with the Shapley weight ``(a+b)! (n-a-b-1)! / n!`` of a
    coalition of ``a + b`` others,

    .. math::

        \\phi_L = \\sum_{a=0}^{l-1} \\sum_{b=a+1}^{r}
                 \\frac{\\binom{l-1}{a}\\binom{r}{b}}{n\\binom{n-1}{a+b}},

    and ``phi_R`` is the same with ``l`` and ``r`` swapped. With one glove
    per side both are 1/2; with ``l == r`` both are 1/2 (symmetry and
    efficiency, u(N) = l = n/2).
    """

    def __init__(self, n_left: int, n_right: int) -> None:
        self.n_left = _check_players(n_left, "n_left", 1)
        self.n_right = _check_players(n_right, "n_right", 1)
        self.n = self.n_left + self.n_right

    @staticmethod
    def _side_value(own: int, other: int) -> float:
        n = own + other
        terms = [
            math.comb(own - 1, a) * math.comb(other, b) / (n * math.comb(n - 1, a + b))
            for a in range(own)
            for b in range(a + 1, other + 1)
        ]
        return math.fsum(terms)

    def value(self, players: np.ndarray) -> float:
        left = int(np.count_nonzero(players < self.n_left))
        return float(min(left, len(players) - left))

    def shapley_values(self) -> np.ndarray:
        left = self._side_value(self.n_left, self.n_right)
        right = self._side_value(self.n_right, self.n_left)
        return np.array([left] * self.n_left + [right] * self.n_right)

    def params(self) -> dict[str, Any]:
        return {"n_left": self.n_left, "n_right": self.n_right}


class AdditiveGame(Game):
    """An inessential game: u(S) = offset + the sum of the weights of S.

    Every marginal contribution of player i is ``w_i``, so its Shapley value
    (and its leave-one-out value) is ``w_i`` (Shapley, 1953 [1]_: additivity
    and the dummy-player axiom). A non-zero ``offset`` makes u(empty) != 0,
    which checks that efficiency reads sum(values) = u(N) - u(empty).

    Parameters
    ----------
    weights : sequence of float
        One weight per player (any sign).
    offset : float
        The utility of the empty coalition.
    """

    def __init__(self, weights: Any, offset: float = 0.0) -> None:
        self.weights = _check_vector(weights, "weights", non_negative=False)
        self.n = len(self.weights)
        if isinstance(offset, bool) or not np.isfinite(offset):
            raise ValueError(f"offset must be a finite number, got {offset!r}")
        self.offset = float(offset)

    def value(self, players: np.ndarray) -> float:
        return self.offset + float(self.weights[players].sum())

    def shapley_values(self) -> np.ndarray:
        return self.weights.copy()

    def params(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist(), "offset": self.offset}


class AirportGame(Game):
    """The airport (runway cost) game: u(S) = max cost in S, u(empty) = 0.

    Player i needs a runway costing ``costs[i]``; a coalition pays for the
    longest runway its members need (Castro et al., 2009 [2]_, section 4.3;
    :meth:`castro2009` is their 100-player instance).

    Parameters
    ----------
    costs : sequence of float
        Non-negative runway costs, one per player.

    Notes
    -----
    Littlechild & Owen (1973) [3]_: with the costs sorted,
    ``c_(1) <= ... <= c_(n)`` and ``c_(0) = 0``, the player of rank k has

    .. math::

        \\phi_{(k)} = \\sum_{j=1}^{k} \\frac{c_{(j)} - c_{(j-1)}}{n - j + 1}:

    each runway segment is shared equally by the players who need it. Equal
    costs get equal values; distinct costs give distinct values.
    """

    def __init__(self, costs: Any) -> None:
        self.costs = _check_vector(costs, "costs", non_negative=True)
        self.n = len(self.costs)

    @classmethod
    def castro2009(cls) -> AirportGame:
        """The 100-player airport game of Castro et al. (2009), section 4.3.

        Costs 1, 2, ..., 10 are needed by 8, 12, 6, 14, 8, 9, 13, 10, 10 and
        10 players.
        """
        sizes = [8, 12, 6, 14, 8, 9, 13, 10, 10, 10]
        return cls([c for c, size in enumerate(sizes, start=1) for _ in range(size)])

    def value(self, players: np.ndarray) -> float:
        return float(self.costs[players].max()) if len(players) else 0.0

    def shapley_values(self) -> np.ndarray:
        order = np.argsort(self.costs, kind="stable")
        ranked = self.costs[order]
        steps = np.diff(ranked, prepend=0.0)
        sharing = self.n - np.arange(self.n)  # players needing segment j: n - j + 1
        values = np.empty(self.n)
        values[order] = np.cumsum(steps / sharing)
        return values

    def params(self) -> dict[str, Any]:
        return {"costs": self.costs.tolist()}


class MinerGame(Game):
    """Miners carrying gold bars in pairs: u(S) = floor(|S| / 2).

    Used for the least core by Yan & Procaccia (2021) [6]_. The game is
    symmetric, so symmetry and efficiency give each player
    ``floor(n / 2) / n``.

    Parameters
    ----------
    n : int
        The number of miners, >= 2.
    """

    def __init__(self, n: int) -> None:
        self.n = _check_players(n, "n", 2)

    def value(self, players: np.ndarray) -> float:
        return float(len(players) // 2)

    def shapley_values(self) -> np.ndarray:
        return np.full(self.n, (self.n // 2) / self.n)

    def params(self) -> dict[str, Any]:
        return {"n": self.n}
