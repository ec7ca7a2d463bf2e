"""``python -m sr_engine benchmark``: every method on the same evaluation rows; a markdown table, CSVs and plots.

    python -m sr_engine benchmark --quick                       # CI: tiny baselines trained on the spot (minutes)
    python -m sr_engine benchmark train-baselines               # once: data/baselines/ (resumes; hours on a CPU)
    python -m sr_engine benchmark train-baselines --plates     # the plates baselines (x4)
    python -m sr_engine benchmark --jobs 2                      # the full setting; loads data/baselines/
    python -m sr_engine benchmark --domains plates              # only the plates section
    python -m sr_engine benchmark timing --model mnist-x4 --out results/timing-mnist-x4

Parts: ``run`` (the default), ``train-baselines`` (with ``--quick``: the tiny ones), ``timing`` (bank wall
time against samples and steps, one engine). Quick results are not results: they test the pipeline.

The command is in :mod:`sr_engine.cli`. Running: :mod:`.run` (digits), :mod:`.plates` (the plates section),
:mod:`.methods`, :mod:`.baselines`, :mod:`.raters`, :mod:`.timing`, :mod:`.memory`; reporting: :mod:`.report`
and :mod:`.plots`; settings: :mod:`.config`; result rows: :mod:`.results`.
"""
