"""What every analysis of `folkrnn explain` reads: its inputs (`Context`) and the results
several analyses share (`Shared`).

`Shared` has one field per shared result, each made on first request by the function of
`folkrnn.interp.activity` its accessor names, from the Context's inputs only. So a value
never depends on which analyses asked for it before (`structure` run alone finds what it
finds after `bars`), and a reader sees every shared result and what makes it in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from folkrnn.checkpoint import Checkpoint
from folkrnn.errors import FolkRNNError
from folkrnn.interp import activity
from folkrnn.interp.activity import CorpusData, Sizes
from folkrnn.interp.counts import TokenCounts
from folkrnn.interp.probes import Ranking


@dataclass(frozen=True)
class ExplainConfig:
    """How thorough the analyses are. `quick` is for tests and tiny models."""

    quick: bool = False
    seed: int = 0
    controls: int = 3  # random-control draws per statistic
    permutations: int = 2000  # shuffles behind a permutation p-value

    def __post_init__(self) -> None:
        if self.controls < 1 or self.permutations < 10:
            raise FolkRNNError("explain needs at least 1 control draw and 10 permutations")

    @classmethod
    def make(cls, quick: bool = False, seed: int = 0) -> ExplainConfig:
        return cls(quick=quick, seed=seed, controls=2 if quick else 3, permutations=200 if quick else 2000)


class _Unmade:
    """The value of a `Shared` field nobody has asked for yet (None is a real value: no corpus)."""

    def __repr__(self) -> str:
        return "<not made yet>"


UNMADE: Any = _Unmade()


@dataclass(eq=False)
class Shared:
    """Results more than one analysis reads, each made once, on first request, by a named
    function of the Context's inputs. Analyses read them through the methods; none writes them."""

    ctx: Context = field(repr=False)
    corpus_data_: CorpusData | None = field(default=UNMADE, init=False)  # activity.teacher_force
    random_states_: dict[str, np.ndarray] = field(default=UNMADE, init=False)  # activity.random_network_states
    bar_rankings_: dict[int, Ranking] = field(default=UNMADE, init=False)  # activity.rank_bar_units
    bar_ablation_: list[dict] = field(default=UNMADE, init=False)  # activity.run_bar_ablation

    def made(self, name: str) -> bool:
        """Whether `name` ("corpus_data", "bar_ablation", ...) is made already (progress bars size on it)."""
        if f"{name}_" not in self.__dataclass_fields__ or name == "ctx":
            raise ValueError(f"Shared has no field {name!r}")
        return getattr(self, f"{name}_") is not UNMADE

    def corpus_data(self, bar=None) -> CorpusData | None:
        """The teacher-forced corpus sample; None when no corpus file is known."""
        if self.corpus_data_ is UNMADE:
            c = self.ctx
            path = activity.corpus_path(c)
            self.corpus_data_ = None if path is None else activity.teacher_force(c.model, c.vocab, path, c.sizes,
                                                                                   c.config.seed, bar)
        return self.corpus_data_

    def random_states(self) -> dict[str, np.ndarray]:
        """h and c of a random network of the model's shape on the corpus sample (needs a corpus)."""
        if self.random_states_ is UNMADE:
            c = self.ctx
            self.random_states_ = activity.random_network_states(c.model, c.vocab, self._data().tunes, c.config.seed)
        return self.random_states_

    def bar_rankings(self) -> dict[int, Ranking]:
        """Per layer, the h units ranked by position in bar beyond the token (needs a corpus)."""
        if self.bar_rankings_ is UNMADE:
            self.bar_rankings_ = activity.rank_bar_units(self._data(), self.ctx.model.config.num_layers,
                                                         self.ctx.config.seed)
        return self.bar_rankings_

    def bar_ablation(self, bar=None) -> list[dict]:
        """The bar-unit ablation while sampling, baseline first (needs a corpus)."""
        if self.bar_ablation_ is UNMADE:
            c = self.ctx
            self.bar_ablation_ = activity.run_bar_ablation(c.model, c.vocab, self._data(), self.bar_rankings(), c.sizes,
                                                           c.config.seed, bar)
        return self.bar_ablation_

    def _data(self) -> CorpusData:
        data = self.corpus_data()
        if data is None:
            raise FolkRNNError(activity.NO_CORPUS)
        return data


@dataclass
class Context:
    """What every analysis may read: the model, training counts, config, the corpus file and
    data sizes, and `shared`, the results several analyses read (made on first request)."""

    checkpoint: Checkpoint
    counts: TokenCounts | None
    config: ExplainConfig = field(default_factory=ExplainConfig)
    model_name: str = "model"
    corpus: str | Path | None = None  # the tune file of the activation analyses (default: the counts' source)
    sizes: Sizes | None = None  # default: Sizes.make(config.quick)
    # Only folkrnn.interp.behaviour still keeps results here, under string keys; once it reads
    # them from `shared`, this field goes.
    extra: dict[str, Any] = field(default_factory=dict)
    shared: Shared = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.sizes is None:
            self.sizes = Sizes.make(self.config.quick)
        self.shared = Shared(self)

    @property
    def model(self):
        return self.checkpoint.model

    @property
    def vocab(self):
        return self.checkpoint.vocab
