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

An agent may say why it took its last action: ``explain()``, called by the harness right after
``act``, returns None (nothing to say), a one-line reason, or a mapping with ``reason``,
``candidates`` (the actions it weighed with their probabilities, best first), ``text`` (what a
language model generated) and ``value``; the harness records it with the step
(docs/run-format.md, ``decision``). The rule agent gives its reason, the policies
(:class:`PolicyAgent`) their top candidates or generated text.

Agents from outside WebGym need no registration and subclass nothing: any object with ``reset(goal,
seed=None)`` and ``act(observation) -> str`` will do (``act_batch``, ``close`` and ``explain`` are
optional). ``make_agent("package.module:factory")`` imports ``package.module`` and calls ``factory``
(a class, or a function returning such an object); an installed distribution may name factories in
the entry point group ``webgym.agents`` (``name = "package.module:factory"``), and they join the
registry under their entry point names. A factory's ``description`` (else the first line of its
docstring) and ``needs_checkpoint`` attributes describe it. What cannot be imported, or is no agent,
raises :class:`AgentLoadError` with a one-line message; :func:`agent_source` says where such an
agent comes from (module, distribution, version).

Imports the standard library and numpy; never imports ``webgym_benchmarks`` or
``webgym_leaderboards``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from webgym_agents.observation import PREVIOUS_ACTIONS, with_history

__all__ = [
    "ENTRY_POINT_GROUP",
    "Agent",
    "AgentInfo",
    "AgentLoadError",
    "PolicyAgent",
    "UnknownAgentError",
    "agent_source",
    "top_candidates",
    "check_agent",
    "check_agent_object",
    "check_external_agent",
    "is_agent_spec",
    "is_registered",
    "load_agent_factory",
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

    def explain(self) -> dict[str, Any] | str | None:
        """Why the last :meth:`act` chose its action (see the module docstring); the default
        says nothing."""
        return None

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
    ``reset(seed=...)``. Observations without a goal get the episode's. :meth:`explain` is the
    last decision's ``explain()`` (where its type has one: the scorer's candidates with their
    probabilities, the LM's candidates or generated text).
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
        self.last_decisions: list[Any] = []  # what the last act_batch decided, in order

    def decide_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of ``decide_batch`` (the LM agent's ``mode``)."""
        return {}

    def reset(self, goal: str, *, seed: int | None = None) -> None:
        super().reset(goal, seed=seed)
        self._rng = np.random.default_rng(seed)
        self._history = []
        self.last_decisions = []

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
        self.last_decisions = list(decisions)
        return [d.action for d in decisions]

    def explain(self) -> dict[str, Any] | str | None:
        """The last decision's ``explain()`` (None where its type has none)."""
        if not self.last_decisions:
            return None
        method = getattr(self.last_decisions[-1], "explain", None)
        return method() if callable(method) else None


def top_candidates(
    actions: list[str], logprobs: Any, *, k: int = 5, chosen: int | None = None
) -> list[dict[str, Any]]:
    """The ``k`` likeliest of ``actions`` under ``logprobs`` (one log-probability each), best
    first, as ``{"action", "prob"}``; the ``chosen`` index is kept even when it is not among
    them (then last). For an agent's :meth:`Agent.explain`."""
    logp = np.asarray(logprobs, dtype=float).reshape(-1)
    if len(logp) != len(actions) or not len(actions):
        return []
    order = [int(i) for i in np.argsort(-logp, kind="stable")[:k]]
    if chosen is not None and 0 <= chosen < len(actions) and chosen not in order:
        order.append(int(chosen))
    return [{"action": actions[i], "prob": float(np.exp(logp[i]))} for i in order]


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
    before anything is built (``webgym_agents.toolkit.checkpoints.policy_problem`` reads what a
    folder holds)."""


class UnknownAgentError(KeyError, ValueError):
    """``make_agent`` was given a name nobody registered; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


AgentFactory = Callable[..., Agent]

ENTRY_POINT_GROUP = "webgym.agents"
PROTOCOL = "an agent needs reset(goal, seed=None) and act(observation) -> str"

_REGISTRY: dict[str, tuple[AgentInfo, AgentFactory]] = {}
_LOADERS: list[Callable[[], None]] = []  # not yet run: see add_agent_loader
_SOURCES: dict[str, dict[str, Any]] = {}  # entry point agents: where each comes from
_BROKEN: dict[str, str] = {}  # entry point agents that cannot be loaded: why, in one line
_SEEN_ENTRY_POINTS: set[tuple[str, str]] = set()  # (name, value) already looked at


class AgentLoadError(ValueError):
    """An agent named as ``module:factory`` or by an entry point cannot be imported, or what
    it names is no agent (no ``act`` / ``reset``); the message is one line."""


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def is_agent_spec(name: str) -> bool:
    """Whether ``name`` is a ``package.module:factory`` reference, not a registry name."""
    return ":" in name


def _missing_methods(obj: Any) -> list[str]:
    return [f"{m}()" for m in ("reset", "act") if not callable(getattr(obj, m, None))]


def _check_factory(factory: Any, what: str) -> None:
    """A factory is callable; a class one has ``reset`` and ``act``."""
    if not callable(factory):
        raise AgentLoadError(
            f"{what} is a {type(factory).__name__}, not a class or a function returning an agent"
        )
    missing = _missing_methods(factory) if isinstance(factory, type) else []
    if missing:
        raise AgentLoadError(f"{what} is a class without {' and '.join(missing)}: {PROTOCOL}")


def check_agent_object(agent: Any, name: str) -> Any:
    """``agent`` (what the factory of ``name`` returned) has ``reset`` and ``act``, else
    :class:`AgentLoadError`; returns it."""
    missing = _missing_methods(agent)
    if missing:
        raise AgentLoadError(
            f"agent {name!r} returned an object of type {type(agent).__name__!r} without "
            f"{' and '.join(missing)}: {PROTOCOL}"
        )
    return agent


def load_agent_factory(spec: str, *, path: str | None = None) -> AgentFactory:
    """The factory that ``spec`` (``package.module:factory``; the factory may be a dotted
    attribute path, ``module:Class.create``) names: the module imported, the attribute looked
    up and checked (callable; a class has ``reset`` and ``act``). ``path``: a folder appended
    to ``sys.path`` (unless there already) before importing, for a module that lives in the
    folder it was named from. Anything wrong raises :class:`AgentLoadError` in one line."""
    module_name, _, attr = spec.partition(":")
    if not all(part.isidentifier() for part in [*module_name.split("."), *attr.split(".")]):
        raise AgentLoadError(
            f"agent {spec!r} is not MODULE:FACTORY (a module and a class or function in it, "
            "e.g. mymodule:MyAgent)"
        )
    if path is not None and path not in sys.path:
        sys.path.append(path)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - the module's own failure, shown in one line
        raise AgentLoadError(
            f"cannot import module {module_name!r} of agent {spec!r}: {_one_line(e)}"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AgentLoadError(
                f"module {module_name!r} has no attribute {attr!r} (agent {spec!r})"
            ) from None
    _check_factory(obj, f"agent {spec!r}")
    return obj


def _describe(factory: Any, fallback: str) -> str:
    """A factory's ``description`` attribute, else its docstring's first line, else
    ``fallback``."""
    text = getattr(factory, "description", None)
    if not isinstance(text, str) or not text.strip():
        doc = getattr(factory, "__doc__", None)
        text = doc.strip().splitlines()[0] if isinstance(doc, str) and doc.strip() else ""
    return " ".join(text.split()) or fallback


def _spec_info(spec: str, factory: Any) -> AgentInfo:
    return AgentInfo(
        spec, _describe(factory, spec), bool(getattr(factory, "needs_checkpoint", False))
    )


def _distribution(module: str) -> tuple[str | None, str | None]:
    """(name, version) of the installed distribution that holds ``module``'s top-level
    package, or (None, None)."""
    names = importlib.metadata.packages_distributions().get(module.split(".")[0]) or []
    for name in names:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        return dist.metadata["Name"] or name, dist.version
    return None, None


def agent_source(name: str) -> dict[str, Any] | None:
    """Where an agent from outside WebGym comes from: ``module``, ``distribution`` and
    ``version`` (of the installed distribution holding the module; None for a module that no
    distribution installed) and ``entry_point`` (``name = module:factory``, or None); None for
    an agent registered in this process (WebGym's own)."""
    if is_agent_spec(name):
        module = name.partition(":")[0]
        dist, version = _distribution(module)
        return {"module": module, "distribution": dist, "version": version, "entry_point": None}
    if name not in _REGISTRY:
        _run_loaders()
    source = _SOURCES.get(name)
    return dict(source) if source is not None else None


def _load_entry_points() -> None:
    """Register the factories that installed distributions name in the entry point group
    ``webgym.agents`` and that are not registered yet. One that cannot be loaded is listed
    with the reason (and refused by :func:`check_agent`); one whose name is taken is ignored
    with a warning."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (ep.name, ep.value) in _SEEN_ENTRY_POINTS:
            continue
        _SEEN_ENTRY_POINTS.add((ep.name, ep.value))
        dist = ep.dist
        dist_name = (dist.metadata["Name"] or dist.name) if dist is not None else None
        where = f"entry point {ep.name} = {ep.value}" + (f" of {dist_name}" if dist_name else "")
        if ep.name in _REGISTRY or is_agent_spec(ep.name):
            why = "is already registered" if ep.name in _REGISTRY else "cannot have a ':'"
            warnings.warn(f"{where} ignored: an agent named {ep.name!r} {why}", stacklevel=3)
            continue
        _SOURCES[ep.name] = {
            "module": ep.module,
            "distribution": dist_name,
            "version": dist.version if dist is not None else None,
            "entry_point": f"{ep.name} = {ep.value}",
        }
        origin = f" ({dist_name} {dist.version})" if dist is not None else ""
        try:
            factory = ep.load()
            _check_factory(factory, where)
        except AgentLoadError as e:
            _BROKEN[ep.name] = str(e)
        except Exception as e:  # noqa: BLE001 - a broken plugin must not break the registry
            _BROKEN[ep.name] = f"cannot load {where}: {_one_line(e)}"
        if ep.name in _BROKEN:
            info = AgentInfo(ep.name, f"cannot be loaded: {_BROKEN[ep.name]}")
            _REGISTRY[ep.name] = (info, _refusing(_BROKEN[ep.name]))
            continue
        info = AgentInfo(
            ep.name,
            _describe(factory, ep.value) + origin,
            bool(getattr(factory, "needs_checkpoint", False)),
        )
        _REGISTRY[ep.name] = (info, factory)


def _refusing(why: str) -> AgentFactory:
    """A factory that raises :class:`AgentLoadError` (an entry point that cannot be loaded)."""

    def refuse(**_kwargs: Any) -> Agent:
        raise AgentLoadError(why)

    return refuse


def add_agent_loader(loader: Callable[[], None]) -> None:
    """Run ``loader`` (a function that registers agents) the first time the registry is listed
    or asked for a name it lacks: agents that live in heavy modules (the trainers' agents,
    which import torch) register themselves without ``import webgym_agents`` importing them."""
    _LOADERS.append(loader)


def _run_loaders() -> None:
    while _LOADERS:
        _LOADERS.pop(0)()
    _load_entry_points()  # last: WebGym's own names are taken first


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
    if is_agent_spec(name):
        raise ValueError(
            f"an agent name has no ':' (MODULE:FACTORY names no registry entry): {name!r}"
        )

    def add(f: AgentFactory) -> AgentFactory:
        if name in _REGISTRY:
            raise ValueError(f"an agent named {name!r} is already registered")
        _REGISTRY[name] = (AgentInfo(name, description, needs_checkpoint, check_checkpoint), f)
        return f

    return add if factory is None else add(factory)


def is_registered(name: str) -> bool:
    """Whether an agent of that name is in the registry now (no entry point is looked up)."""
    return name in _REGISTRY


def unregister_agent(name: str) -> None:
    """Remove an agent from the registry (for plugins and tests); unknown names are ignored.
    An entry point agent removed is registered again by the next listing while its
    distribution is installed."""
    _REGISTRY.pop(name, None)
    _SOURCES.pop(name, None)
    _BROKEN.pop(name, None)
    _SEEN_ENTRY_POINTS.difference_update({k for k in _SEEN_ENTRY_POINTS if k[0] == name})


def list_agents() -> list[AgentInfo]:
    """Every registered agent, sorted by name."""
    _run_loaders()
    return [info for _, (info, _f) in sorted(_REGISTRY.items())]


def check_agent(name: str, checkpoint: str | None = None) -> AgentInfo:
    """What :func:`make_agent` checks before building anything: ``name`` is registered
    (else :class:`UnknownAgentError`, a ``KeyError`` and a ``ValueError``, naming the valid
    ones), or a ``module:factory`` that imports and names a factory, or an entry point agent
    that loads (else :class:`AgentLoadError`, a ``ValueError``), and ``checkpoint`` is given
    exactly when the agent needs one and is one the agent plays (its ``check_checkpoint``; else
    ``ValueError``). Returns the agent's :class:`AgentInfo`."""
    if is_agent_spec(name):
        info = _spec_info(name, load_agent_factory(name))
    else:
        entry = _REGISTRY.get(name)
        if entry is None:
            _run_loaders()
            entry = _REGISTRY.get(name)
        if entry is None:
            names = ", ".join(sorted(_REGISTRY)) or "none registered"
            raise UnknownAgentError(
                f"unknown agent {name!r}; agents: {names} (or MODULE:FACTORY, e.g. "
                "mymodule:MyAgent)"
            )
        if name in _BROKEN:
            raise AgentLoadError(_BROKEN[name])
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


def check_external_agent(name: str, checkpoint: str | None = None) -> None:
    """That an agent from outside WebGym (``module:factory``, an entry point) gives an object
    with ``reset`` and ``act``, before any episode: a class factory was checked with the class
    (:func:`check_agent`); a function factory is called once, what it returns checked, then
    closed (where it has ``close``). :class:`AgentLoadError` in one line otherwise."""
    check_agent(name, checkpoint)
    factory = load_agent_factory(name) if is_agent_spec(name) else _REGISTRY[name][1]
    if isinstance(factory, type):
        return
    try:
        agent = make_agent(name, checkpoint)
    except AgentLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - the factory's own failure, shown in one line
        raise AgentLoadError(f"cannot build agent {name!r}: {_one_line(e)}") from None
    close = getattr(agent, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - a probe that fails to close is dropped anyway
            pass


def make_agent(name: str, checkpoint: str | None = None, **kwargs: Any) -> Agent:
    """Build the agent registered as ``name``, or named as ``module:factory``.

    The arguments are checked first (:func:`check_agent`); ``kwargs`` go to the factory. An
    agent from outside WebGym (``module:factory``, an entry point) is checked to have
    ``reset`` and ``act`` (:class:`AgentLoadError`).
    """
    info = check_agent(name, checkpoint)
    external = is_agent_spec(name)
    factory = load_agent_factory(name) if external else _REGISTRY[name][1]
    agent = factory(checkpoint=checkpoint, **kwargs) if info.needs_checkpoint else factory(**kwargs)
    if external or name in _SOURCES:
        check_agent_object(agent, name)
    return agent
