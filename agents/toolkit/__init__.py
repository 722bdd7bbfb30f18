"""The training toolkit every trainer shares, in the order data flows through a run:

``training`` (the common config and the run directory) and ``trainers`` (the trainer
registry); ``rollouts`` / ``ray_rollouts`` / ``data_parallel`` (collecting episodes, in one
process, over Ray actors, or across data-parallel processes); ``returns`` and ``losses`` (the
maths of advantages and objectives); ``onpolicy`` (the plumbing of on-policy learners);
``checkpoints`` (what a checkpoint folder holds); ``curves`` (the learning-curve picture);
``critic_diagnostics`` (how well a critic's Q(s, a) and V(s) rank the logged actions).

The toolkit imports ``webgym``, ``webgym_agents.policies`` and ``webgym_agents.models``; never
``webgym_agents.algos`` by name (the registry finds the trainers there as data, at run time).
"""
