"""Interpretability toolkit: what the weights (and, later, the activations) of a v2 model mean.

Modules: `counts` (training counts of each token), `stats` (statistics with controls),
`weights` (inventory, spectra, softmax, token columns), `equivalence` (Q4 from weights),
`gramian` (similarity of states over a tune), `registry` (the analyses `folkrnn explain`
runs), `analyses` (the built-in ones), `figures`, `report` (report.html, findings.json).
See docs/explain.md.
"""
