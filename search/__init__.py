"""The search service: Optuna studies over NCA pre-pre-training settings.

Entry point: ``python -m search.run --domain code``. The pieces: ``search.config`` (study files),
``search.space`` (what is searched), ``search.trial`` (the one trial function), ``search.driver``
(the ask/tell loop), ``search.executors`` and ``search.slurm`` (where trials run).
"""
