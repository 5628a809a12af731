"""The explain runner and the analyses' shared results: the registry imports no analysis,
and a shared result does not depend on which analyses asked for it first."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from folkrnn.checkpoint import Checkpoint
from folkrnn.interp.registry import Context, ExplainConfig
from folkrnn.interp.report import _clean
from folkrnn.interp.runner import run_analyses
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()
DATA = Path(__file__).parent / "data" / "folkrnn_v2_generated_samples.txt"
INTERP = Path(__file__).resolve().parent.parent / "src" / "folkrnn" / "interp"


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    m = FolkRNN(ModelConfig(hidden_size=8, num_layers=2))
    m.reset_parameters(torch.Generator().manual_seed(5))
    return Checkpoint(m.eval(), V2, {})


def _ctx(ck: Checkpoint) -> Context:
    return Context(ck, None, ExplainConfig.make(quick=True), "tiny", corpus=DATA)


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_registry_and_context_import_no_analysis():
    for name in ("registry", "context", "activity"):
        mine = _imports(INTERP / f"{name}.py")
        assert not mine & {"folkrnn.interp.analyses", "folkrnn.interp.behaviour", "folkrnn.interp.sections",
                           "folkrnn.interp.runner"}, name


def test_structure_alone_finds_what_it_finds_after_bars(checkpoint):
    alone = _ctx(checkpoint)
    (s1,) = run_analyses(alone, ["structure"])
    after = _ctx(checkpoint)
    b, s2 = run_analyses(after, ["bars", "structure"])
    assert b.analysis.name == "bars" and s1.result.skipped is None and s2.result.skipped is None
    assert json.dumps(_clean(s1.result.findings), sort_keys=True) == json.dumps(_clean(s2.result.findings), sort_keys=True)
    assert s1.result.sentences == s2.result.sentences and s1.result.answers == s2.result.answers


def test_shared_results_are_made_once_on_first_request(checkpoint):
    ctx = _ctx(checkpoint)
    assert not ctx.shared.made("corpus_data") and not ctx.shared.made("bar_rankings")
    ranks = ctx.shared.bar_rankings()  # asks for the corpus sample first
    assert ctx.shared.made("corpus_data") and ctx.shared.bar_rankings() is ranks
    assert set(ranks) == {1, 2} and not ctx.shared.made("bar_ablation")
    with pytest.raises(ValueError, match="no field"):
        ctx.shared.made("q1_parts")
    no_corpus = Context(checkpoint, None, ExplainConfig.make(quick=True))
    assert no_corpus.shared.corpus_data() is None and no_corpus.shared.made("corpus_data")
