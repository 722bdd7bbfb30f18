"""Learned policies and the agents that play them: the candidate scorer (``scorer_policy``,
an encoder that scores the legal actions), the language-model policy (``lm_agent``) and its
value critic (``lm_critic``). They read observations through ``webgym_agents.observation``
and load backbones from ``webgym_agents.models``.

A policy knows how to decide, save and load; it never imports ``webgym_agents.algos`` (the
trainers) nor the toolkit's training plumbing (the one look into the toolkit is
``toolkit.checkpoints``, a read-only description of a folder, to say what a folder that holds no
LM policy holds instead).
"""
