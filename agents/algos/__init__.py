"""The training algorithms: one module (or, for Digi-Q, one package) per trainer, each a
config dataclass, presets (``smoke``, ``cpu``, ``gpu``) and a ``train_<name>(config, run)``
written top to bottom, declared as ``TRAINER`` (a ``webgym_agents.toolkit.training.Trainer``).

No algorithm imports another: what two share lives in ``webgym_agents.toolkit``. The trainer
registry (``webgym_agents.toolkit.trainers``) finds them here; nothing in this package imports
the registry.
"""
