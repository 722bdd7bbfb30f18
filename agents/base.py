"""The agent protocol and the registry of agents by name.

An agent plays one episode at a time::

    agent = make_agent("rule")
    agent.reset(obs["goal"], seed=0)          # a new episode
    while not done:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs))
        done = terminated or truncated
    agent.close()

``act`` maps one observation (the env's dict: ``goal``, ``url``, ``text``, ``axtree``,
``html``, ``available_actions``, ``clickable_actions``, ``last_action``, ``last_action_error``,
``step``) to one action string of :mod:`webgym.actions`' grammar. ``act_batch`` maps several
observations at once (batched LM policies override it). An agent that samples draws only from
its own generator, created in ``reset(seed=...)``, so an episode is reproducible from its seed.

The registry maps names to factories: ``register_agent`` (also a decorator), ``make_agent``,
``list_agents``. Agents that load weights declare ``needs_checkpoint=True`` and receive
``checkpoint=`` from ``make_agent``; the others must not be given one.

Imports only the standard library; never imports ``benchmarks`` or ``leaderboards``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.observation import PREVIOUS_ACTIONS, with_history

__all__ = [
    "Agent",
    "AgentInfo",
    "PolicyAgent",
    "UnknownAgentError",
    "check_agent",
    "list_agents",
    "make_agent",
    "add_agent_loader",
    "register_agent",
]


class Agent(ABC):
    """One policy that plays episodes one after another.

    Class attributes describe it: ``name`` (its registry name), ``description`` (one line),
    ``needs_checkpoint`` (it loads weights from a checkpoint) and ``deterministic`` (equal
    observations always give equal actions, whatever the seed).
    """

    name: str = ""
    description: str = ""
    needs_checkpoint: bool = False
    deterministic: bool = True

    def __init__(self) -> None:
        self.goal = ""
        self.seed: int | None = None

    def reset(self, goal: str, *, seed: int | None = None) -> None:
        """Start a new episode for the instruction ``goal``.

        Agents that sample create their generator here from ``seed`` (``None``: fresh entropy)
        and draw from nothing else. Subclasses that override this call ``super().reset``.
        """
        self.goal = goal
        self.seed = seed

    @abstractmethod
    def act(self, observation: dict[str, Any]) -> str:
        """The action string for ``observation`` (one step of the current episode)."""

    def act_batch(self, observations: list[dict[str, Any]]) -> list[str]:
        """One action per observation, in order; the default calls :meth:`act` in a loop."""
        return [self.act(obs) for obs in observations]

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Free what the agent holds (models, processes); the default holds nothing."""

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PolicyAgent(Agent):
    """Plays a batched policy object (``policy.decide_batch(observations, temperature=, rng=)``
    returning decisions with an ``action``): the LM and scorer agents.

    Temperature 0 is deterministic; sampling draws only from the generator made in
    ``reset(seed=...)``. Observations without a goal get the episode's.
    """

    needs_checkpoint = True

    def __init__(self, policy: Any, *, temperature: float = 0.0) -> None:
        super().__init__()
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, not {temperature}")
        self.policy = policy
        self.temperature = float(temperature)
        self.deterministic = self.temperature == 0
        self._rng = np.random.default_rng()
        self._history: list[str] = []  # this episode's actions (reset clears it)

    def decide_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of ``decide_batch`` (the LM agent's ``mode``)."""
        return {}

    def reset(self, goal: str, *, seed: int | None = None) -> None:
        super().reset(goal, seed=seed)
        self._rng = np.random.default_rng(seed)
        self._history = []

    def act(self, observation: dict[str, Any]) -> str:
        """One decision of this episode; the observation gets the agent's own earlier actions
        (``previous_actions``, its episode memory) unless it carries them already."""
        if PREVIOUS_ACTIONS not in observation:
            observation = with_history(observation, self._history)
        action = self.act_batch([observation])[0]
        self._history.append(action)
        return action

    def act_batch(self, observations: list[dict[str, Any]]) -> list[str]:
        obs = [o if o.get("goal") else {**o, "goal": self.goal} for o in observations]
        decisions = self.policy.decide_batch(
            obs, temperature=self.temperature, rng=self._rng, **self.decide_kwargs()
        )
        return [d.action for d in decisions]


# --------------------------------------------------------------------------------------------
# The registry.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentInfo:
    """What the registry knows of an agent without building it."""

    name: str
    description: str
    needs_checkpoint: bool = False
    check_checkpoint: Callable[[str], str | None] | None = field(
        default=None, compare=False, repr=False
    )
    """Why the agent cannot play a checkpoint (one line), or None: :func:`check_agent` asks it
    before anything is built (``agents.checkpoints.policy_problem`` reads what a folder holds)."""


class UnknownAgentError(KeyError, ValueError):
    """``make_agent`` was given a name nobody registered; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


AgentFactory = Callable[..., Agent]

_REGISTRY: dict[str, tuple[AgentInfo, AgentFactory]] = {}
_LOADERS: list[Callable[[], None]] = []  # not yet run: see add_agent_loader


def add_agent_loader(loader: Callable[[], None]) -> None:
    """Run ``loader`` (a function that registers agents) the first time the registry is listed
    or asked for a name it lacks: agents that live in heavy modules (the trainers' agents,
    which import torch) register themselves without ``import agents`` importing them."""
    _LOADERS.append(loader)


def _run_loaders() -> None:
    while _LOADERS:
        _LOADERS.pop(0)()


def register_agent(
    name: str,
    factory: AgentFactory | None = None,
    *,
    description: str,
    needs_checkpoint: bool = False,
    check_checkpoint: Callable[[str], str | None] | None = None,
) -> Any:
    """Register ``factory`` (a class or a function returning an :class:`Agent`) as ``name``.

    Used directly, ``register_agent("rule", RuleAgent, description=...)``, or as a class or
    function decorator, ``@register_agent("rule", description=...)``. A factory of an agent
    that ``needs_checkpoint`` is called with ``checkpoint=`` (plus any keyword arguments given
    to :func:`make_agent`); ``check_checkpoint(checkpoint)`` (optional) says why the agent
    cannot play a checkpoint, or None, before anything is built. Registering a taken name
    raises ``ValueError``.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"an agent name must be a non-empty string, not {name!r}")

    def add(f: AgentFactory) -> AgentFactory:
        if name in _REGISTRY:
            raise ValueError(f"an agent named {name!r} is already registered")
        _REGISTRY[name] = (AgentInfo(name, description, needs_checkpoint, check_checkpoint), f)
        return f

    return add if factory is None else add(factory)


def unregister_agent(name: str) -> None:
    """Remove an agent from the registry (for plugins and tests); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def list_agents() -> list[AgentInfo]:
    """Every registered agent, sorted by name."""
    _run_loaders()
    return [info for _, (info, _f) in sorted(_REGISTRY.items())]


def check_agent(name: str, checkpoint: str | None = None) -> AgentInfo:
    """What :func:`make_agent` checks before building anything: ``name`` is registered
    (else :class:`UnknownAgentError`, a ``KeyError`` and a ``ValueError``, naming the valid
    ones), ``checkpoint`` is given exactly when the agent needs one and is one the agent plays
    (its ``check_checkpoint``; else ``ValueError``). Returns the agent's :class:`AgentInfo`."""
    entry = _REGISTRY.get(name)
    if entry is None:
        _run_loaders()
        entry = _REGISTRY.get(name)
    if entry is None:
        names = ", ".join(sorted(_REGISTRY)) or "none registered"
        raise UnknownAgentError(f"unknown agent {name!r}; agents: {names}")
    info = entry[0]
    if info.needs_checkpoint and checkpoint is None:
        raise ValueError(
            f"agent {name!r} needs a checkpoint: make_agent({name!r}, "
            "checkpoint='path/to/checkpoint'), or --checkpoint PATH"
        )
    if not info.needs_checkpoint and checkpoint is not None:
        raise ValueError(
            f"agent {name!r} takes no checkpoint (got {str(checkpoint)!r}); "
            "only agents that load weights do"
        )
    if checkpoint is not None and info.check_checkpoint is not None:
        why = info.check_checkpoint(str(checkpoint))
        if why:
            raise ValueError(why)
    return info


def make_agent(name: str, checkpoint: str | None = None, **kwargs: Any) -> Agent:
    """Build the agent registered as ``name``.

    The arguments are checked first (:func:`check_agent`); ``kwargs`` go to the factory.
    """
    info = check_agent(name, checkpoint)
    factory = _REGISTRY[name][1]
    if info.needs_checkpoint:
        return factory(checkpoint=checkpoint, **kwargs)
    return factory(**kwargs)
