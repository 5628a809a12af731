"""Musical and statistical evaluation of v2 transcriptions, generated or real.

The questions the folk-rnn authors asked of their models' output, as numbers:
do bars add up (pickups and their complements recognised), are repeats and
endings well formed, what is the form (AABB, 8 bars a part), do sections and
tunes end on the tonic, how do the token / meter / mode / duration / pitch
distributions compare with a reference corpus, and does a tune copy long runs
from it.

- `tune.analyse_tune`: one transcription -> `TuneReport`;
- `stats`: distributions, Jensen-Shannon divergence, aggregate summary;
- `novelty.NGramIndex`: nearest reference tune, longest copied run;
- `load.load_tunes`: data_v2 or ABC files; `plots.write_plots`: PNG figures;
- `evaluate_file` / `evaluate_tunes` here tie them together; `format_table`
  renders the summary for the terminal.

>>> ev = evaluate_tunes([["M:2/4", "K:Cmaj", "|:", "C", "E", "G", "E", "|", "c", "2", "C", "2", ":|"]])
>>> ev.summary["bars_right"], ev.summary["final_tonic"], ev.reports[0].pattern
(1.0, 1.0, 'AA')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from folkrnn.errors import FolkRNNError
from folkrnn.evaluate.load import Loaded, Rejected, load_tunes
from folkrnn.evaluate.novelty import Match, NGramIndex
from folkrnn.evaluate.stats import COMPARED, Distributions, divergences, summarise
from folkrnn.evaluate.tune import DEFAULT_FORM, BarError, FormConfig, Section, TuneReport, analyse_tune
from folkrnn.rhythm import scan as scan_rhythm

__all__ = [
    "BarError",
    "Distributions",
    "EvaluateConfig",
    "Evaluation",
    "FormConfig",
    "Match",
    "NGramIndex",
    "Section",
    "TuneReport",
    "analyse_tune",
    "evaluate_file",
    "evaluate_tunes",
    "format_table",
    "load_tunes",
]

FORMAT_VERSION = 2  # 2: a tune's "index" is its place in the input, from 1 (was 0-based among kept tunes)


@dataclass(frozen=True)
class EvaluateConfig:
    """Options of an evaluation.

    copy_run: a tune "copies" when it shares a run of at least this many body
    tokens with a reference tune; ngram: the n-gram size of the novelty index
    (runs shorter than it are not found, so copy_run >= ngram).
    """

    copy_run: int = 16
    ngram: int = 8
    form: FormConfig = DEFAULT_FORM

    def __post_init__(self):
        if self.ngram < 2:
            raise FolkRNNError(f"--ngram must be at least 2, got {self.ngram}")
        if self.copy_run < self.ngram:
            raise FolkRNNError(f"--copy-run ({self.copy_run}) must be at least the n-gram size ({self.ngram})")
        if not 0 < self.form.same_part <= 1:
            raise FolkRNNError(f"--same-part must be in (0, 1], got {self.form.same_part}")


@dataclass
class Reference:
    """The corpus a file was compared with."""

    path: str
    tunes: int
    distributions: Distributions
    divergence: dict[str, float]
    rejected: list[Rejected] = field(default_factory=list)


@dataclass
class Evaluation:
    """Per-tune reports, the aggregate summary and distributions of one evaluated set."""

    source: str
    format: str
    config: EvaluateConfig
    reports: list[TuneReport]
    summary: dict
    distributions: Distributions
    reference: Reference | None = None
    rejected: list[Rejected] = field(default_factory=list)
    keys: list = field(default_factory=list)  # per tune (tonic as written, flats?) for ABC input, else None

    def to_json(self) -> dict:
        out = {
            "format": "folkrnn-evaluation",
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "input_format": self.format,
            "config": {"copy_run": self.config.copy_run, "ngram": self.config.ngram, "same_part": self.config.form.same_part},
            "summary": self.summary,
            "distributions": self.distributions.to_json(),
            "rejected": [r.to_json() for r in self.rejected],
            "tunes": [r.to_json() for r in self.reports],
        }
        if self.reference is not None:
            out["reference"] = {
                "source": self.reference.path,
                "tunes": self.reference.tunes,
                "rejected": len(self.reference.rejected),
                "divergence_bits": self.reference.divergence,
                "distributions": self.reference.distributions.to_json(),
            }
        return out


def _analyse_all(tunes: Sequence[Sequence[str]], form: FormConfig, progress: bool, desc: str, titles=None,
                 positions=None, xs=None):
    reports: list[TuneReport] = []
    dist = Distributions()
    it = tunes
    if progress:
        from folkrnn.files import progress as bar

        it = bar(tunes, desc=desc, unit="tune")
    for k, tune in enumerate(it):
        tune = list(tune)
        if tune and tune[0] == "<s>":
            tune = tune[1:]
        if tune and tune[-1] == "</s>":
            tune = tune[:-1]
        if len(tune) < 2:
            raise FolkRNNError(f"{desc}: transcription {k + 1} is shorter than its M: and K: tokens")
        scan = scan_rhythm(tune)
        r = analyse_tune(tune, k, form, scan=scan)
        r = _identified(r, titles[k] if titles and k < len(titles) else "",
                        positions[k] if positions and k < len(positions) else None,
                        xs[k] if xs and k < len(xs) else None)
        dist.add(tune, r, scan.ev_dur, scan.pitches)
        reports.append(r)
    return reports, dist.finish()


def _identified(r: TuneReport, title: str, position: int | None, x: str | None) -> TuneReport:
    """The report with the tune's title, place in its input (from 1) and X: field."""
    if not title and position is None and x is None:
        return r
    from dataclasses import replace

    return replace(r, title=title or r.title, position=position, x=x)


def evaluate_tunes(
    tunes: Sequence[Sequence[str]],
    config: EvaluateConfig | None = None,
    reference: Sequence[Sequence[str]] | None = None,
    progress: bool = False,
    source: str = "<tunes>",
    reference_source: str = "<reference>",
    titles: Sequence[str] | None = None,
    positions: Sequence[int] | None = None,
    xs: Sequence[str | None] | None = None,
) -> Evaluation:
    """Evaluate token lists (`M:.. K:.. body`), optionally against reference token lists.

    `titles`, `positions` (each tune's place in its input, from 1; default: 1, 2, ...)
    and `xs` (ABC X: fields) identify the tunes in the reports."""
    config = config or EvaluateConfig()
    reports, dist = _analyse_all(tunes, config.form, progress, source, titles, positions, xs)
    ref = None
    if reference is not None:
        _, ref_dist = _analyse_all(reference, config.form, progress, reference_source)
        from folkrnn.vocab import Vocabulary

        div = divergences(dist, ref_dist, Vocabulary.v2().tokens)
        ref = Reference(reference_source, len(reference), ref_dist, div)
        index = NGramIndex(reference, n=config.ngram, progress=progress)
        it = zip(reports, tunes)
        if progress:
            from folkrnn.files import progress as bar

            it = bar(it, total=len(reports), desc="novelty", unit="tune")
        for r, tune in it:
            tune = [t for t in tune if t not in ("<s>", "</s>")]
            r.extra.update(index.query(tune).to_json())
    summary = summarise(reports, config.copy_run if reference is not None else None)
    return Evaluation(source, "tokens", config, reports, summary, dist, ref)


def evaluate_file(
    path: str | Path,
    against: str | Path | None = None,
    config: EvaluateConfig | None = None,
    progress: bool = False,
) -> Evaluation:
    """Evaluate a data_v2 or ABC file, optionally against a reference corpus file."""
    loaded: Loaded = load_tunes(path)
    ref_loaded: Loaded | None = load_tunes(against) if against is not None else None
    ev = evaluate_tunes(
        loaded.tunes,
        config,
        reference=ref_loaded.tunes if ref_loaded else None,
        progress=progress,
        source=str(path),
        reference_source=str(against) if against is not None else "<reference>",
        titles=loaded.titles,
        positions=loaded.positions,
        xs=loaded.xs,
    )
    ev.format = loaded.format
    ev.rejected = loaded.rejected
    ev.keys = loaded.keys
    if ev.reference is not None and ref_loaded is not None:
        ev.reference.rejected = ref_loaded.rejected
    return ev


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x, fmt="{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def format_table(ev: Evaluation, top_patterns: int = 5) -> str:
    """The aggregate figures as a compact two-column table (plain text)."""
    s = ev.summary
    rows: list[tuple[str, str]] = [
        ("tunes", f"{s['tunes']}" + (f" ({len(ev.rejected)} rejected)" if ev.rejected else "")),
        ("mean length", f"{_num(s['tokens_mean'])} tokens, {_num(s['bars_mean'])} bars"),
        ("bars right", f"{_pct(s['bars_right'])} of {s['bars']} (inside sections: {_pct(s['interior_bars_right'])})"),
        ("tunes with every bar right", _pct(s["tunes_all_bars_right"])),
        ("tunes with a pickup", _pct(s["tunes_with_pickup"])),
        ("repeats/endings well formed", _pct(s["repeats_ok"])),
        ("sections per tune", _num(s["sections_mean"], "{:.2f}")),
        ("8-bar sections", f"{_pct(s['sections_8_bars'])} (tunes with all 8: {_pct(s['tunes_all_sections_8_bars'])})"),
        ("form AABB", _pct(s["pattern_AABB"])),
        ("ending 1 vs 2 similarity", _num(s["ending_similarity_mean"], "{:.2f}")),
        ("tune ends on tonic", f"{_pct(s['final_tonic'])} (fifth {_pct(s['final_fifth'])}, third {_pct(s['final_third'])})"),
        ("sections end on tonic", _pct(s["section_ends_tonic"])),
        ("mean pitch range", f"{_num(s['pitch_range_mean'])} semitones"),
        ("stray tokens per tune", _num(s["stray_tokens_per_tune"], "{:.2f}")),
    ]
    pats = ev.distributions.pattern.most_common(top_patterns)
    if pats:
        n = s["tunes"]
        rows.append(("top forms", ", ".join(f"{p or '-'} {100 * c / n:.0f}%" for p, c in pats)))
    if ev.reference is not None:
        r = ev.reference
        rows.append(("reference", f"{r.path} ({r.tunes} tunes)"))
        for name, desc in COMPARED.items():
            rows.append((f"JSD {desc}", f"{r.divergence[name]:.4f} bits"))
        if "nearest_similarity_mean" in s:
            rows.append(("nearest-tune similarity", f"{_num(s['nearest_similarity_mean'], '{:.3f}')} (Jaccard of {ev.config.ngram}-grams)"))
            rows.append(("mean longest copied run", f"{_num(s['longest_run_mean'])} tokens"))
            rows.append((f"tunes copying >= {s['copy_run']} tokens", _pct(s["tunes_copying"])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
