"""Artifacts: every model (or crafted set) that a notebook trains and another reuses, one module
per producing notebook. The floor between the methods and the studies.

=================  ==========  ================================================================
module             notebook    what it trains
=================  ==========  ================================================================
:mod:`.bases`      01          base A and base B (synsigns halves), ImageNet bases (full)
:mod:`.transfer`   02          the teacher and target set, each method's student
:mod:`.robust`     03          the robust models of each adversarial-training method
:mod:`.continual`  04          the continual learners over the task sequence
:mod:`.backdoor`   05          clean, planted and label-flip teachers, each method's student
:mod:`.gan`        07          the AC-GAN and the classifiers trained with its samples
:mod:`.defences`   08          backdoored models purified by each defence, their students,
                               teachers re-planted on a detector's cleaned set
=================  ==========  ================================================================

Each artifact function takes its notebook's recipe (a dict: the run's resolved recipe, see
:class:`lib.config.RunConfig`) and the store explicitly; a recipe that reuses another notebook's
models carries that notebook's recipe under ``recipe["needs"]``. A model's store key holds the
recipe entries its training reads and ``code``: :func:`lib.store.versions.module_version` of the
artifact module, computed from it and every ``lib`` module it imports, so an edit of any code
behind a model retrains it and no list of that code is kept by hand. Artifacts import methods and
infrastructure, never a study.
"""
