"""Studies: what combines the analytic core, the timing and the checks into one table.

One runner (:mod:`.runner`) turns a sequence of ``(spec, workload)`` configurations into a
sequence of :class:`~paramcalc.studies.runner.Row` (spec, workload, params, cost, memory,
prediction, measurement); :func:`~paramcalc.studies.compare.compare` (a row per cell, one
workload) and :func:`~paramcalc.studies.sweep.sweep` (a tidy table over ranges) are two views
over that sequence, the way ``torch.utils.benchmark.Compare`` arranges labelled
``Measurement`` objects. :func:`~paramcalc.studies.timed.bench` is ``pc.bench``: a timed run
with its prediction attached. This layer sits above ``timing/`` and ``checks/`` and imports
only downward; without timing a study is pure Python (no torch, no pandas).
"""
