"""Adapters from WebGym to training frameworks: ``webgym.integrations.trl`` (TRL's
``GRPOTrainer(environment_factory=...)``) and ``webgym.integrations.openenv`` (an OpenEnv
server). Each imports its framework only when used; none imports anything above ``webgym``."""
