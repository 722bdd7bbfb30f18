"""How the language-model policy acts: :class:`Decision` (one act and what produced it) and
:class:`LMActing`, the part of :class:`~webgym_agents.policies.lm_agent.LMPolicy` that
decides (constrained choice over the listed actions, or free generation with search queries).

A mixin: it uses the policy's backbone, prompt config and generator; never imports the
policy module (which imports it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from webgym.actions import ActionParseError, parse_action
from webgym_agents.base import top_candidates
from webgym_agents.observation import (
    goal_without_price,
    has_search_bar,
)
from webgym_agents.policies.lm_prompt import (
    QUERY_PLACEHOLDER,
    QUERY_STOPS,
    SEARCH_PREFIX,
    _nodes,
    build_prompt,
    listed_actions,
)

# --------------------------------------------------------------------------------------------
# The policy.
# --------------------------------------------------------------------------------------------


RngLike = np.random.Generator | random.Random | int | None


def _generator(rng: RngLike = None, seed: int | None = None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, random.Random):
        return np.random.default_rng(rng.getrandbits(63))
    if isinstance(rng, int | np.integer):
        return np.random.default_rng(int(rng))
    return np.random.default_rng(seed)


def _draw_seed(gen: np.random.Generator) -> int:
    return int(gen.integers(0, 2**31 - 1))


@dataclass
class Decision:
    """One act: the action, and what produced it (trainers keep all of it per step).

    ``logprob``: log P(action | prompt) under the distribution that acted (the module
    docstring's factorisation; 0.0 at temperature 0); ``temperature``: the T it acted at;
    ``value``: V(prompt) when the policy has a value head (same forward pass). Choice mode:
    ``candidates``, ``index`` (the chosen one), ``scores`` (each candidate's summed token
    log-likelihood, detached: the logits of the choice, ``softmax(scores / T)``), and on a page
    with a search bar ``query_ids`` (the generated query's tokens; ``query_logprob``, their
    log p_T sum, is filled when that search was chosen at T > 0). Generate mode: ``raw``,
    ``valid`` and ``token_ids`` (what was sampled).
    """

    action: str
    mode: str
    prompt: str
    candidates: list[str] = field(default_factory=list)
    scores: torch.Tensor | None = None
    index: int | None = None
    logprob: float | None = None
    temperature: float = 0.0
    value: float | None = None
    query_ids: list[int] | None = None
    query_logprob: float | None = None
    raw: str | None = None
    valid: bool = True
    token_ids: list[int] | None = None

    @property
    def logprobs(self) -> torch.Tensor | None:
        """The candidates' scores (an older name of :attr:`scores`: NOT normalised
        probabilities; :attr:`logprob` is the chosen action's)."""
        return self.scores

    def explain(self) -> dict[str, Any]:
        """What ``PolicyAgent.explain`` records. Choice mode: the five likeliest candidates,
        ``softmax(scores / T)`` (T = 1 where it acted greedily), the chosen one among them.
        Generate mode: the generated text, and a reason when it was no valid action."""
        out: dict[str, Any] = {"value": self.value}
        if self.mode == "generate":
            out["text"] = self.raw
            if not self.valid:
                out["reason"] = f"the generated text is no valid action: played {self.action}"
        elif self.scores is not None and self.candidates:
            t = self.temperature if self.temperature > 0 else 1.0
            logp = torch.log_softmax(self.scores.double() / t, dim=0).tolist()
            out["candidates"] = top_candidates(self.candidates, logp, chosen=self.index)
        else:
            out["reason"] = "no action available on the page"
        return out


@dataclass
class DecisionEval:
    """What :meth:`LMPolicy.evaluate_decisions` recomputes, differentiable, per decision.

    ``logprobs`` (n,): log P(chosen | prompt) under the acting distribution at the decision's
    temperature (equal to ``Decision.logprob``); ``values`` (n,) when the policy has a value
    head, else None; ``entropies`` (n,): choice mode, the entropy of ``softmax(scores / T)``
    (differentiable); generate mode, the summed token entropies (detached).
    """

    logprobs: torch.Tensor
    values: torch.Tensor | None
    entropies: torch.Tensor


@dataclass
class _Query:
    text: str
    ids: list[int]


class LMActing:
    """Deciding: the acting half of :class:`~webgym_agents.policies.lm_agent.LMPolicy`."""

    def prompt(self, obs: dict[str, Any]) -> str:
        """The prompt for ``obs`` (:func:`build_prompt` with this policy's config)."""
        return build_prompt(obs, self.backbone, self.config)

    def has_search(self, obs: dict[str, Any]) -> bool:
        return bool(_nodes(obs)) and has_search_bar(obs)

    @staticmethod
    def clean_query(text: str) -> str:
        """A generated continuation of ``search[`` as a query: up to the first ``]`` or line
        end, the ``<query>`` placeholder and brackets removed, spaces collapsed, at most 200
        characters; ``""`` when no letter or digit is left."""
        q = text.split("]", 1)[0].split("\n", 1)[0]
        q = q.replace(QUERY_PLACEHOLDER, " ").replace("[", " ")
        q = " ".join(q.split())[:200].strip()
        return q if any(ch.isalnum() for ch in q) else ""

    def fallback_query(self, obs: dict[str, Any]) -> str:
        """The goal up to its price clause, on one line (the rule agent's query)."""
        return " ".join(goal_without_price(str(obs.get("goal") or "")).split()) or "search"

    def _queries(
        self,
        prompts: Sequence[str],
        observations: Sequence[dict[str, Any]],
        temperature: float,
        seed: int | None,
    ) -> list[_Query]:
        if not prompts:
            return []
        gens = self.backbone.generate_with_ids(
            [p + SEARCH_PREFIX for p in prompts],
            max_new_tokens=self.max_new_tokens,
            temperature=temperature,
            seed=seed,
            stop_strings=QUERY_STOPS,
        )
        queries = []
        for g, obs in zip(gens, observations, strict=True):
            q = self.clean_query(g.text)
            if not q:
                self.stats["fallback_queries"] += 1
                q = self.fallback_query(obs)
            queries.append(_Query(q, list(g.token_ids)))
        return queries

    def generate_queries(
        self,
        prompts: Sequence[str],
        observations: Sequence[dict[str, Any]],
        *,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        """The LM's search query per prompt: its continuation of ``prompt + "search["``,
        stopped at ``]`` or a line end (see :meth:`clean_query`, :meth:`fallback_query`)."""
        return [q.text for q in self._queries(prompts, observations, temperature, seed)]

    def query_logprobs(
        self, prompts: Sequence[str], query_ids: Sequence[Sequence[int]], temperature: float
    ) -> torch.Tensor:
        """sum_j log p_T(q_j | prompt + "search[", q_<j) per query, shape (n,): the
        probability of writing the query at temperature T (> 0). Differentiable."""
        if not prompts:
            return torch.zeros(0, device=self.backbone.device)
        return self.backbone.score_sequences(
            [p + SEARCH_PREFIX for p in prompts],
            [list(q) for q in query_ids],
            temperature=float(temperature),
        ).sums

    def _candidates_batch(
        self,
        observations: Sequence[dict[str, Any]],
        prompts: Sequence[str],
        temperature: float,
        gen: np.random.Generator | None,
    ) -> tuple[list[list[str]], list[_Query | None]]:
        cands = [listed_actions(o, self.config) for o in observations]
        found: list[_Query | None] = [None] * len(observations)
        search = [i for i, o in enumerate(observations) if self.has_search(o)]
        if search:
            seed = _draw_seed(gen) if gen is not None and temperature > 0 else None
            queries = self._queries(
                [prompts[i] for i in search],
                [observations[i] for i in search],
                temperature if gen is not None else 0.0,
                seed,
            )
            for i, q in zip(search, queries, strict=True):
                action = f"search[{q.text}]"
                if action not in cands[i]:
                    cands[i].append(action)
                    found[i] = q
        return cands, found

    def candidates(
        self,
        obs: dict[str, Any],
        *,
        rng: RngLike = None,
        temperature: float | None = None,
        prompt: str | None = None,
    ) -> list[str]:
        """The choice candidates of ``obs``: the listed available actions, plus
        ``search[<query>]`` on a page with a search bar.

        The query is greedy when ``rng`` is None, else sampled at ``temperature`` (default 1.0)
        from a seed drawn from ``rng`` (so Best-of-N draws different queries per call).
        """
        gen = None if rng is None else _generator(rng)
        t = 0.0 if gen is None else (1.0 if temperature is None else float(temperature))
        p = prompt if prompt is not None else self.prompt(obs)
        return self._candidates_batch([obs], [p], t, gen)[0][0]

    # ------------------------------------------------------------------ acting

    @torch.no_grad()
    def decide_batch(
        self,
        observations: Sequence[dict[str, Any]],
        *,
        mode: str = "choice",
        temperature: float = 1.0,
        rng: RngLike = None,
        seed: int | None = None,
    ) -> list[Decision]:
        """One :class:`Decision` per observation, with ``logprob`` (and ``value`` when the policy
        has a value head).

        Generate mode generates every prompt in one left-padded batch, then scores what was
        sampled in one right-padded pass (for ``logprob`` at T > 0 and the value; skipped at
        T = 0 without a head); choice mode generates the search queries in one batch, then
        scores each observation's candidates with one key/value-shared pass (the value read
        from it), and the chosen generated queries in one more batch.
        """
        if mode not in ("choice", "generate"):
            raise ValueError(f"mode must be 'choice' or 'generate', not {mode!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, not {temperature}")
        if not observations:
            return []
        temperature = float(temperature)
        gen = _generator(rng, seed) if temperature > 0 else None
        prompts = [self.prompt(o) for o in observations]
        self.stats["acts"] += len(observations)
        if mode == "generate":
            return self._decide_generate(prompts, temperature, gen)
        cands, queries = self._candidates_batch(observations, prompts, temperature, gen)
        out: list[Decision] = []
        chose_query: list[Decision] = []
        for p, cs, q in zip(prompts, cands, queries, strict=True):
            if not cs:  # no available action at all: an explicit no-op
                d = Decision("noop()", mode, p, logprob=0.0, temperature=temperature)
                if self.value_head is not None:
                    d.value = float(self.values([p])[0])
                out.append(d)
                continue
            scores, state = self.backbone.score_candidates_and_state(p, cs, add_eos=self.add_eos)
            scores = scores.float()
            if temperature == 0:
                idx, logprob = int(torch.argmax(scores)), 0.0
            else:
                probs = torch.softmax(scores / temperature, dim=0).double().cpu().numpy()
                probs = probs / probs.sum()
                idx = int(gen.choice(len(cs), p=probs))
                logprob = float(torch.log_softmax(scores / temperature, dim=0)[idx])
            d = Decision(
                cs[idx],
                mode,
                p,
                candidates=cs,
                scores=scores.cpu(),
                index=idx,
                logprob=logprob,
                temperature=temperature,
                query_ids=None if q is None else q.ids,
            )
            if self.value_head is not None:
                d.value = float(self._head(state))
            if q is not None and temperature > 0 and cs[idx].startswith(SEARCH_PREFIX):
                chose_query.append(d)
            out.append(d)
        if chose_query:
            sums = self.query_logprobs(
                [d.prompt for d in chose_query], [d.query_ids for d in chose_query], temperature
            )
            for d, s in zip(chose_query, sums.tolist(), strict=True):
                d.query_logprob = float(s)
                d.logprob = float(d.logprob) + float(s)
        return out

    def _decide_generate(
        self, prompts: list[str], temperature: float, gen: np.random.Generator | None
    ) -> list[Decision]:
        gens = self.backbone.generate_with_ids(
            prompts,
            max_new_tokens=self.max_new_tokens,
            temperature=temperature,
            seed=_draw_seed(gen) if gen is not None else None,
        )
        scored = None
        if temperature > 0 or self.value_head is not None:
            scored = self.backbone.score_sequences(
                prompts,
                [g.token_ids for g in gens],
                temperature=temperature if temperature > 0 else 1.0,
            )
        out = []
        for i, (p, g) in enumerate(zip(prompts, gens, strict=True)):
            action, valid = self.parse_generation(g.text)
            if not valid:
                self.stats["invalid"] += 1
            d = Decision(
                action,
                "generate",
                p,
                raw=g.text,
                valid=valid,
                token_ids=list(g.token_ids),
                temperature=temperature,
                logprob=float(scored.sums[i]) if temperature > 0 else 0.0,
            )
            if self.value_head is not None:
                d.value = float(self._head(scored.prompt_states[i]))
            out.append(d)
        return out

    def decide(self, obs: dict[str, Any], **kwargs: Any) -> Decision:
        """:meth:`decide_batch` of one observation."""
        return self.decide_batch([obs], **kwargs)[0]

    def act(
        self,
        obs: dict[str, Any],
        *,
        mode: str = "choice",
        temperature: float = 1.0,
        rng: RngLike = None,
        seed: int | None = None,
    ) -> str:
        """One action string for ``obs`` (see "Two ways of acting" in the module docstring).

        Temperature 0 is greedy/argmax and deterministic; otherwise draws come from ``rng``
        (a numpy Generator, a ``random.Random`` or an int seed) or ``seed``.
        """
        return self.decide(obs, mode=mode, temperature=temperature, rng=rng, seed=seed).action

    @staticmethod
    def parse_generation(text: str) -> tuple[str, bool]:
        """``(action, valid)``: the canonical action parsed from a generation (whole text,
        else its first non-empty line), or the text as-is and ``False``."""
        tries = [text]
        first = next((line for line in text.splitlines() if line.strip()), "")
        if first and first != text:
            tries.append(first)
        for t in tries:
            try:
                return parse_action(t).to_string(), True
            except ActionParseError:
                continue
        return text, False

    # ------------------------------------------------------------------ training
