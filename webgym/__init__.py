"""WebGym: web shopping as a reinforcement-learning environment and benchmark."""

__version__ = "0.1.0"
