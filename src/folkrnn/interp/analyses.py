"""The built-in analyses of `folkrnn explain`: everything that needs only the weights
(and, for token-level results, the training counts). Each registers itself; see
`folkrnn.interp.registry` for the contract. Sentences are f-strings over the findings,
with the wording chosen by the measured numbers against their control.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from folkrnn.interp import equivalence, figures, weights
from folkrnn.interp.equivalence import similarity
from folkrnn.interp.registry import Context, Figure, Result, Table, register

# A statistic "differs from its control" when it is more than Z_CUT control SDs and
# REL_CUT (relative) away from the control mean: both, since a few control draws give a
# rough SD.
Z_CUT = 4.0
REL_CUT = 0.05
P_CUT = 0.01


def _rng(ctx: Context, salt: int) -> np.random.Generator:
    return np.random.default_rng([ctx.config.seed, salt])


def _differs(value: float, mean: float, z: float) -> bool:
    return abs(z) > Z_CUT and abs(value - mean) > REL_CUT * abs(mean)


def _toks(items: list[dict], with_counts: bool) -> str:
    if with_counts:
        return ", ".join(f"`{d['token']}` ({d['count']:,})" for d in items)
    return ", ".join(f"`{d['token']}`" for d in items)


# -- inventory ---------------------------------------------------------------------------
@register("inventory", "Every matrix: shapes, counts, norms", "parameters", order=10)
def inventory(ctx: Context, bar) -> Result:
    inv = weights.inventory(ctx.model)
    whole = [r for r in inv["tensors"] if r["gate"] is None]
    trainable = [r for r in whole if not r["initial_state"]]
    biggest = max(trainable, key=lambda r: r["frobenius"])
    rows = tuple((r["label"], r["name"], "x".join(map(str, r["shape"])), f"{r['count']:,}",
                  f"{r['frobenius']:.2f}", f"{r['spectral']:.2f}") for r in inv["tensors"])
    sent = [
        f"The model has {inv['total']:,} parameters in {len(trainable)} tensors, plus {inv['initial_states']:,} numbers "
        f"of learned initial state (h0 and c0 per layer) that the count leaves out.",
        f"The largest by Frobenius norm is the {biggest['label']} ({biggest['frobenius']:.1f}; spectral norm "
        f"{biggest['spectral']:.2f}).",
    ]
    bar.update(1)
    return Result(findings={"inventory": inv["tensors"], "total": inv["total"], "initial_states": inv["initial_states"]},
                  sentences=sent,
                  tables=[Table("Parameter inventory", ("tensor", "name", "shape", "count", "Frobenius", "spectral"), rows,
                                "Gate rows (i input, f forget, g cell candidate, o output) are slices of the tensor above "
                                "them and are not counted again.")])


# -- gate spectra ------------------------------------------------------------------------
@register("gate_spectra", "Singular values of each gate's matrices", "parameters", order=20)
def gate_spectra(ctx: Context, bar) -> Result:
    bar.total = 8 * ctx.model.config.num_layers
    rows = weights.gate_spectra(ctx.model, _rng(ctx, 1), ctx.config.controls, lambda: bar.update(1))
    lower = [r for r in rows if _differs(r["effective_rank"], r["control"]["effective_rank_mean"], r["effective_rank_z"])
             and r["effective_rank"] < r["control"]["effective_rank_mean"]]
    higher = [r for r in rows if _differs(r["effective_rank"], r["control"]["effective_rank_mean"], r["effective_rank_z"])
              and r["effective_rank"] > r["control"]["effective_rank_mean"]]
    n = len(rows)
    sent = [f"In {len(lower)} of {n} gate matrices the singular values are more concentrated than in the same numbers "
            f"shuffled (effective rank lower by more than {Z_CUT:.0f} control SDs and {REL_CUT:.0%}); in {len(higher)} "
            f"they are flatter than shuffled; the other {n - len(lower) - len(higher)} have the spectrum of their "
            f"shuffled entries."]
    if lower:
        r = min(lower, key=lambda r: r["effective_rank"] / r["control"]["effective_rank_mean"])
        sent.append(f"Most concentrated: layer {r['layer']} {weights.GATE_NAMES[r['gate']]}, {r['matrix']} matrix: "
                    f"effective rank {r['effective_rank']:.1f} of {len(r['singular_values'])} against "
                    f"{r['control']['effective_rank_mean']:.1f} ± {r['control']['effective_rank_sd']:.2g} shuffled; its top "
                    f"10% of directions hold {r['top10_energy']:.0%} of its energy ({r['control']['top10_energy_mean']:.0%} shuffled).")
    rec = [r for r in rows if r["matrix"] == "recurrent"]
    sent.append(f"Spectral norms of the recurrent matrices run from {min(r['spectral_norm'] for r in rec):.2f} to "
                f"{max(r['spectral_norm'] for r in rec):.2f} (config5 initialises each block orthogonal, spectral norm 1).")
    table = Table("Effective rank per gate matrix (control: entries shuffled)",
                  ("layer", "gate", "matrix", "shape", "spectral norm", "effective rank", "shuffled", "z"),
                  tuple((r["layer"], weights.GATE_NAMES[r["gate"]], r["matrix"], "x".join(map(str, r["shape"])),
                         f"{r['spectral_norm']:.2f}", f"{r['effective_rank']:.1f}",
                         f"{r['control']['effective_rank_mean']:.1f} ± {r['control']['effective_rank_sd']:.2g}",
                         f"{r['effective_rank_z']:+.1f}") for r in rows))
    fig = Figure("Singular values per gate", figures.gate_spectra(rows),
                 "Solid: the model's matrices; dotted: the same entries shuffled (mean of "
                 f"{ctx.config.controls} draws), the structure-free control.")
    return Result(findings={"gate_spectra": rows}, sentences=sent, figures=[fig], tables=[table])


# -- softmax -----------------------------------------------------------------------------
@register("softmax", "The softmax layer: its SVD read as tokens", "parameters", order=30)
def softmax(ctx: Context, bar) -> Result:
    bar.total = 1
    with_counts = ctx.counts is not None
    d = weights.softmax_svd(ctx.model, ctx.vocab, ctx.counts, _rng(ctx, 2), ctx.config.controls)
    c = d["control"]
    differs = _differs(d["effective_rank"], c["effective_rank_mean"], d["effective_rank_z"])
    verdict = ("more concentrated than" if d["effective_rank"] < c["effective_rank_mean"] else "flatter than") if differs \
        else "indistinguishable from"
    w1, w1r = d["w1"], d["w1_uncentered"]
    wc = w1["control"]
    sent = [f"Adding the same number to every logit changes no probability, so the part of the softmax matrix along the "
            f"all-ones logit direction (its mean over tokens) is removed before everything below: it held "
            f"{d['all_ones_share']:.0%} of the matrix's energy. In the raw matrix, direction 1 (singular value "
            f"{w1r['singular_value']:.2f}) has {w1r['u1_majority_sign_share']:.0%} of its token loadings of one sign; "
            f"after centring, {d['u1_majority_sign_share']:.0%}."]
    sent.append(f"The centred matrix's first right singular vector w1 (the layer-3 state that writes direction 1): "
                f"{w1['band_share']:.0%} of its {d['shape'][1]} entries have magnitude {w1['band'][0]}-{w1['band'][1]} "
                f"(Sturm's part 3 band; spectrum-matched random matrices, 95% range "
                f"{wc['band_share_95'][0]:.0%}-{wc['band_share_95'][1]:.0%} over {wc['draws']} draws), excess kurtosis "
                f"{w1['kurtosis']:+.2f} ({wc['kurtosis_95'][0]:+.2f} to {wc['kurtosis_95'][1]:+.2f}); uncentred, "
                f"{w1r['band_share']:.0%} in the band and kurtosis {w1r['kurtosis']:+.2f}.")
    sent.append(f"The centred softmax matrix ({d['shape'][0]} tokens x {d['shape'][1]} units) has effective rank "
            f"{d['effective_rank']:.1f} against {c['effective_rank_mean']:.1f} ± {c['effective_rank_sd']:.2g} for its entries "
            f"shuffled: its spectrum is {verdict} that of the same numbers in random positions. Its top 10% of directions hold "
            f"{d['top10_energy']:.0%} of its energy ({c['top10_energy_mean']:.0%} shuffled).")
    for v in d["vectors"][:3]:
        kinds_pos = Counter(weights.kind_group(t["token"]) for t in v["positive"]).most_common(1)[0]
        kinds_neg = Counter(weights.kind_group(t["token"]) for t in v["negative"]).most_common(1)[0]
        sent.append(f"Direction {v['index']} (singular value {v['singular_value']:.2f}) has at one end "
                    f"{_toks(v['positive'], with_counts)} ({kinds_pos[1]} of {len(v['positive'])} {kinds_pos[0]}) and at the "
                    f"other {_toks(v['negative'], with_counts)} ({kinds_neg[1]} of {len(v['negative'])} {kinds_neg[0]}).")
    bar.update(1)
    fig = Figure("Singular values of the softmax matrix (all-ones direction removed)",
                 figures.spectrum(d, "Softmax matrix V, centred over tokens"),
                 f"Grey: the same entries shuffled (mean of {c['draws']} draws). A singular vector's sign is arbitrary.")
    sv = d.pop("singular_values")
    return Result(findings={"softmax_singular_values": sv, "softmax_spectrum": d}, sentences=sent, figures=[fig])


@register("bias_frequency", "The output bias against training frequency", "parameters", order=40)
def bias_frequency(ctx: Context, bar) -> Result:
    if ctx.counts is None:
        return Result(skipped="no training counts (the checkpoint records none; pass --corpus FILE)")
    d = weights.bias_vs_frequency(ctx.model, ctx.vocab, ctx.counts, _rng(ctx, 3), ctx.config.permutations)
    bar.update(1)
    if d["tokens"] < 3:
        return Result(skipped=f"only {d['tokens']} tokens of the vocabulary occur in the counts")
    found = d["p"] < P_CUT and abs(d["r"]) > d["shuffled_abs_r_95"]
    verdict = (f"the bias {'rises' if d['r'] > 0 else 'falls'} with the token's training frequency" if found
               else f"no relation between the bias and training frequency beyond chance (the bar is p < {P_CUT})")
    sent = [f"Over the {d['tokens']} tokens seen as targets in training, the softmax bias and the log training frequency "
            f"have Pearson r = {d['r']:.2f} (bias shuffled over tokens: |r| < {d['shuffled_abs_r_95']:.2f} in 95% of "
            f"{d['shuffles']:,} shuffles; p = {d['p']:.2g}): {verdict}."]
    if found:
        sent.append(f"The fitted slope is {d['slope']:.2f} (1 would make the bias alone a unigram model of the training data).")
    if d["unseen_tokens"]:
        sent.append(f"The {d['unseen_tokens']} tokens never seen in training have a mean bias of {d['unseen_bias_mean']:.2f}, "
                    f"against {d['seen_bias_mean']:.2f} for the seen ones.")
    fig = Figure("Output bias vs log training frequency", figures.bias_scatter(d),
                 f"One dot per token seen as a target (counts from {ctx.counts.source}); the six farthest from the fit are named. "
                 f"Control: the same biases shuffled over tokens.")
    control = {k: d[k] for k in ("shuffled_abs_r_95", "p", "shuffles")}
    rest = {k: v for k, v in d.items() if k not in ("r", "shuffled_abs_r_95", "p", "shuffles")}
    return Result(findings={"bias_vs_log_frequency": d["r"], "bias_vs_log_frequency_control": control,
                            "bias_vs_log_frequency_detail": rest}, sentences=sent, figures=[fig])


@register("softmax_columns", "Softmax columns: correlation with the bias, duplicates, sign flips", "parameters", order=50)
def softmax_columns(ctx: Context, bar) -> Result:
    bar.total = 2
    corr = weights.unit_bias_correlation(ctx.model, _rng(ctx, 4), ctx.config.controls)
    bar.update(1)
    dup = weights.duplicate_columns(ctx.model, _rng(ctx, 5), ctx.config.controls)
    bar.update(1)
    cc = corr["control"]
    H = len(corr["r"])
    sent = [f"Each layer-3 unit writes a column of the softmax matrix, one weight per token. Correlated over tokens with the "
            f"output bias, these columns have mean |r| = {corr['mean_abs_r']:.2f} and max |r| = {corr['max_abs_r']:.2f}; "
            f"the columns of spectrum-matched random matrices (random orthogonal U and V with the centred matrix's "
            f"singular values, {cc['draws']} draws) give mean |r| = {cc['mean_abs_r']:.2f}, and "
            f"{corr['units_beyond_control']} of {H} units exceed their 99th percentile ({cc['abs_r_99']:.2f}; "
            f"{0.01 * H:.1f} expected by chance)."]
    dc = dup["control"]
    rc = dup["raw_cosine"]
    sent.append(f"Of the {dup['pairs']:,} pairs of units, {dup['duplicates']} have near-duplicate softmax columns (Pearson r "
                f"over tokens > {dup['threshold']}, i.e. the cosine once the all-ones direction is removed) and "
                f"{dup['sign_flipped']} sign-flipped ones (r < -{dup['threshold']}); spectrum-matched random matrices have "
                f"{dc['duplicates_mean']:.1f} (95% range {dc['duplicates_95'][0]:.0f}-{dc['duplicates_95'][1]:.0f}) and "
                f"{dc['sign_flipped_mean']:.1f} ({dc['sign_flipped_95'][0]:.0f}-{dc['sign_flipped_95'][1]:.0f}) over "
                f"{dc['draws']} draws (r ranges from {dup['min_cosine']:.2f} to {dup['max_cosine']:.2f} in the model). By the "
                f"raw cosine, which counts the shared offset on every token as likeness, there would be {rc['duplicates']} "
                f"and {rc['sign_flipped']}.")
    if dup["duplicates"] + dup["sign_flipped"]:
        top = ", ".join(f"{p['units'][0]}/{p['units'][1]} ({p['cosine']:+.2f})" for p in dup["top_pairs"][:5])
        sent.append(f"The most alike pairs (layer-3 units, 0-based): {top}.")
    fig = Figure("Correlation of each unit's softmax column with the bias",
                 figures.histogram_vs_control(corr["r"], cc["abs_r_99"], "Pearson r over tokens", "Units vs the output bias",
                                              "99% of spectrum-matched columns inside"),
                 f"Control: columns of spectrum-matched random matrices ({cc['draws']} draws).")
    return Result(findings={"unit_bias_correlation": corr, "softmax_column_pairs": dup}, sentences=sent, figures=[fig])


@register("input_columns", "Token columns by kind", "parameters", order=60)
def input_columns(ctx: Context, bar) -> Result:
    d = weights.input_columns(ctx.model, ctx.vocab, ctx.counts, _rng(ctx, 6), ctx.config.permutations)
    bar.update(1)
    means = ", ".join(f"{g} {v['mean']:.2f} ({v['tokens']})" for g, v in d["input_by_kind"].items())
    e = d["input_kind_eta"]
    found = e["p"] < P_CUT
    sent = [f"Layer-1 input-column norms ({d['over']}), mean per kind (tokens): {means}. Kind explains "
            f"{e['eta_squared']:.0%} of their variance (kinds shuffled over tokens: {e['shuffled_95']:.0%} at the 95th "
            f"percentile; p = {e['p']:.2g}): " + ("the kinds differ." if found else "no difference between kinds beyond chance.")]
    eo = d["output_kind_eta"]
    sent.append(f"Softmax-row norms: kind explains {eo['eta_squared']:.0%} of their variance (shuffled: "
                f"{eo['shuffled_95']:.0%} at the 95th percentile; p = {eo['p']:.2g}).")
    if ctx.counts is not None and d["unseen"]["tokens"]:
        u = d["unseen"]
        sent.append(f"The {len(u['tokens'])} tokens never seen in training ({', '.join('`' + t + '`' for t in u['tokens'][:12])}"
                    f"{'...' if len(u['tokens']) > 12 else ''}) keep their initial input columns: mean norm "
                    f"{u['input_norm_mean']:.2f} against {u['seen_input_norm_mean']:.2f} for seen tokens.")
    if d.get("input_norm_vs_log_count_r") is not None:
        sent.append(f"Over seen tokens, input-column norm and log training count have Pearson r = "
                    f"{d['input_norm_vs_log_count_r']:.2f}.")
    fig = Figure("Token column norms by kind", figures.input_norms(d),
                 "Left: each token's layer-1 input weights (all four gates); right: its softmax row. Open circles: tokens "
                 "never seen in training. Control for the kind effect: kinds shuffled over tokens.")
    return Result(findings={"input_columns": d}, sentences=sent, figures=[fig])


# -- Q4: equivalent tokens -----------------------------------------------------------------
@register("enharmonics", "Q4: equivalent spellings in the weights", "enharmonics", section="questions", order=40)
def enharmonics(ctx: Context, bar) -> Result:
    if len(equivalence.pitch_tokens(ctx.vocab)) < 3:
        return Result(skipped="the vocabulary has fewer than 3 pitch tokens")
    d = similarity(ctx.model, ctx.vocab, ctx.counts, _rng(ctx, 7), ctx.config.permutations)
    bar.update(1)
    if not d["pairs"]:
        return Result(skipped="the vocabulary has no pair of equivalent pitch tokens")
    allcos = d.pop("all_pair_cosines")
    P = d["pitch_tokens"]
    fig = Figure("Equivalent pairs against all pitch-token pairs", figures.equivalence({**d, "all_pair_cosines": allcos}),
                 "Grey: cosine of every pair of pitch tokens (the control); lines: the equivalent pairs.")
    rows = []
    for p in d["pairs"]:
        rows.append((p["a"], p["b"], p["kind"], "all" if p["all_modes"] else " ".join(m[2:] for m in p["modes"]),
                     f"{p['count_a']:,}" if "count_a" in p else "?", f"{p['count_b']:,}" if "count_b" in p else "?",
                     f"{p['input']['cosine']:+.2f}", f"{min(p['input']['rank_from_a'], p['input']['rank_from_b'])}",
                     f"{p['input']['z']:+.1f}", f"{p['output']['cosine']:+.2f}",
                     f"{min(p['output']['rank_from_a'], p['output']['rank_from_b'])}", f"{p['output']['z']:+.1f}",
                     "unseen: " + " ".join(p["unseen"]) if p.get("unseen") else ""))
    table = Table(f"Equivalent pairs (rank of the partner among the other {P - 1} pitch tokens, best of both sides; "
                  "z against all pitch pairs)",
                  ("a", "b", "kind", "modes", "count a", "count b", "in cos", "in rank", "in z", "out cos", "out rank",
                   "out z", "flag"), tuple(rows),
                  "Equivalent = same MIDI pitch at the start of a bar under the mode's key signature. A token never seen in "
                  "training keeps random input weights: its pair says nothing.")
    sent = [f"{len(d['pairs'])} pairs of the {P} pitch tokens sound the same in at least one mode "
            f"({sum(p['kind'] == 'enharmonic' for p in d['pairs'])} enharmonic, "
            f"{sum(p['kind'] == 'redundant' for p in d['pairs'])} with a redundant accidental; "
            f"{sum(p['all_modes'] for p in d['pairs'])} in all four modes)."]
    answer = None
    if ctx.counts is None:
        sent.append("Without training counts (pass --corpus FILE) the pairs cannot be told from pairs holding a token the "
                    "model never saw, so no answer is drawn.")
    else:
        s = d["summary"]
        seen = s.get("seen.all")
        unseen_pairs = sum(1 for p in d["pairs"] if p.get("unseen"))
        if seen:
            chance = seen["input"]["chance_top3"] * seen["pairs"]
            verdicts = []
            for space, label in (("input", "input columns (layer 1)"), ("output", "softmax rows")):
                x = seen[space]
                perm = x.get("permutation")
                sent.append(f"By {label}: over the {seen['pairs']} pairs whose tokens both occur in training, the partner "
                            f"is among the 3 most similar pitch tokens for {x['top3']} (about {chance:.1f} by chance); median "
                            f"cosine {x['median_cosine']:+.2f}, median z {x['median_z']:+.1f} against all {P * (P - 1) // 2:,} "
                            f"pitch-token pairs (mean {d['control'][space]['mean']:+.2f}, sd {d['control'][space]['sd']:.2f})"
                            + (f", median z {x['median_matched_z']:+.1f} against pairs of tokens with similar training counts"
                               if x["median_matched_z"] is not None else "") + ".")
                if perm is None:
                    continue
                sent.append(f"Control for the {space} side: {perm['kind']} have mean z {perm['null_mean_z']:+.2f} "
                            f"(95th percentile {perm['null_95']:+.2f} over {perm['draws']:,} draws) against "
                            f"{perm['mean_z']:+.2f} for the equivalent pairs (p = {perm['p']:.2g}).")
                if perm["p"] < P_CUT:
                    v = f"closer than random pairs of seen pitch tokens by {space} weights (p = {perm['p']:.2g})"
                    mz = x["median_matched_z"]
                    if mz is not None:
                        v += (f", and than pairs of equally frequent tokens (median z {mz:+.1f})" if mz >= 1 else
                              f", but not clearly closer than pairs of equally frequent tokens (median z {mz:+.1f})")
                else:
                    v = f"no closer than random pairs of seen pitch tokens by {space} weights (p = {perm['p']:.2g})"
                verdicts.append(v)
            if verdicts:
                answer = (f"From the weights alone, equivalent spellings are {'; and '.join(verdicts)}. Over "
                          f"{seen['pairs']} equivalent pairs seen in training, the partner is among the 3 nearest of "
                          f"{P - 1} pitch tokens for {seen['input']['top3']} by input column and {seen['output']['top3']} "
                          f"by softmax row (about {chance:.1f} by chance).")
                red, sl = s.get("seen.redundant"), d.get("same_letter_control")
                if red and sl and seen["input"].get("permutation", {}).get("p", 1.0) < P_CUT:
                    r_in, s_in = red["input"]["median_cosine"], sl["input"]["median_cosine"]
                    share = ("all" if s_in >= r_in else "part" if s_in > d["control"]["input"]["mean"] else "none")
                    answer += (f" Sharing a letter accounts for {share} of it on the input side: redundant-accidental pairs "
                               f"have median input "
                               f"cosine {red['input']['median_cosine']:+.2f}, same-letter pairs that sound different "
                               f"{sl['input']['median_cosine']:+.2f}.")
                if unseen_pairs:
                    answer += f" {unseen_pairs} more pairs hold a token never seen in training and are left out."
            red = s.get("seen.redundant")
            sl = d.get("same_letter_control")
            if red and sl:
                sent.append(f"Redundant-accidental pairs seen in training ({red['pairs']}) have median cosine "
                            f"{red['input']['median_cosine']:+.2f} (input) and {red['output']['median_cosine']:+.2f} (output); "
                            f"control: {sl['pairs']} seen pairs with the same letter and octave that never sound the same "
                            f"(e.g. {', '.join('`' + e + '`' for e in sl['examples'][:3])}) have "
                            f"{sl['input']['median_cosine']:+.2f} and {sl['output']['median_cosine']:+.2f}.")
        else:
            sent.append("No equivalent pair has both tokens in the training data, so the weights cannot answer.")
        wc = d.get("output_cosine_within", {})
        if wc.get("unseen") is not None and wc.get("seen") is not None:
            sent.append(f"Softmax rows of the {len(d['unseen_pitch_tokens'])} unseen pitch tokens have mean cosine "
                        f"{wc['unseen']:+.2f} with each other ({wc['seen']:+.2f} among seen ones): never-seen tokens resemble "
                        f"each other on the output side whatever their pitch, so their pairs say nothing about equivalence."
                        if wc["unseen"] > wc["seen"] + 0.1 else
                        f"Softmax rows of the {len(d['unseen_pitch_tokens'])} unseen pitch tokens have mean cosine "
                        f"{wc['unseen']:+.2f} with each other ({wc['seen']:+.2f} among seen ones).")
    closer = [v.startswith("closer") for v in verdicts] if answer else []
    return Result(findings=d, sentences=sent, figures=[fig], tables=[table], answers={"q4": answer} if answer else {},
                  verdicts={"q4": "yes" if any(closer) else "no"} if answer else {})
