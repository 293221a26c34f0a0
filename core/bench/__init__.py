"""The benchmark: every method measured the same way on a grid of cases.

``methods`` (the registry of methods and baselines) -> ``plan`` (profiles, targets, cases) ->
``runner`` (measuring each case) -> ``executors`` (in-process or Ray tasks, progress) ->
``retrain_cache`` -> ``machine`` (memory, threads, git) ->
``columns`` (the shared table names) -> ``report`` (summaries and verdicts) -> ``figures`` ->
``store`` (the results folder: writing, merging, reading).
"""
