"""Scripted agents: policies written by hand, no learning and no torch.

``rule_agent`` (search the goal, pick by overlap, choose options, buy), ``reader_agent`` (the
rule agent that reads item pages first) and ``random_agent`` (a uniform pick among the legal
actions). Each is an ``Agent`` (``webgym_agents.base``) registered by ``import webgym_agents``.

Imports ``webgym`` and ``webgym_agents.base`` / ``webgym_agents.observation`` only; never
``webgym_agents.policies``, ``webgym_agents.toolkit`` or ``webgym_agents.algos``.
"""
