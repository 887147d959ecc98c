"""Tables from run folders (pandas, no plotting): circuits per step and task, the accuracy matrix and the
continual-learning summaries, cross-task overlap, and the sweep headline (overlap vs forgetting).

Modules: :mod:`~circuitft.analysis.runs` (reading run folders: circuitft's and the prior work's layout),
:mod:`~circuitft.analysis.tables` (per-run tables), :mod:`~circuitft.analysis.continual` (accuracy matrix,
ACC / BWT / FWT / forgetting), :mod:`~circuitft.analysis.sweep` (pairs A -> B and fits),
:mod:`~circuitft.analysis.forgetting` (the forgetting curve of ``accuracy.jsonl`` and its area),
:mod:`~circuitft.analysis.fits` (line and sigmoid fits, compared by AIC and leave-one-out R²),
:mod:`~circuitft.analysis.uncertainty` (correlation intervals, cluster bootstrap, permutation p, verdict),
:mod:`~circuitft.analysis.measures` (the overlap measures of :mod:`circuitft.eap.overlap` with each graph's
top-k set computed once, and their chance levels).
"""
