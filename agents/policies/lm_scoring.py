"""What trainers ask the language-model policy: log-probabilities of decisions, choices,
generations and tokens under the current weights (:class:`LMScoring`, a part of
:class:`~webgym_agents.policies.lm_agent.LMPolicy`).

A mixin: never imports the policy module (which imports it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from webgym_agents.policies.lm_acting import Decision, DecisionEval
from webgym_agents.policies.lm_prompt import SEARCH_PREFIX


class LMScoring:
    """Scoring: the log-probabilities half of
    :class:`~webgym_agents.policies.lm_agent.LMPolicy`."""

    def evaluate_choices(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        chosen: Sequence[int | str],
        temperature: float,
        *,
        query_ids: Sequence[Sequence[int] | None] | None = None,
        with_values: bool = True,
    ) -> DecisionEval:
        """Choice-mode log P(chosen | prompt) at ``temperature`` (> 0), the value and the
        choice's entropy, per decision, differentiable: the quantities
        :meth:`decide_batch` acted with, recomputed by the same code.

        ``chosen``: an index into the decision's candidates, or the action string;
        ``query_ids``: per decision the generated query's tokens (``Decision.query_ids``; None
        where there was none). When the chosen candidate is the generated search, its query's
        log p_T sum is added (the module docstring's factorisation). One key/value-shared
        scoring pass per decision (its value read from it), plus one batch for the queries.
        """
        n = len(prompts)
        if not (len(candidates) == len(chosen) == n):
            raise ValueError(
                f"{n} prompts, {len(candidates)} candidate lists, {len(chosen)} chosen"
            )
        if query_ids is not None and len(query_ids) != n:
            raise ValueError(f"{len(query_ids)} query_ids for {n} decisions")
        if temperature <= 0:
            raise ValueError(
                f"temperature must be > 0, not {temperature}: greedy acting is a point mass "
                "(Decision.logprob 0.0) with no gradient"
            )
        dev = self.backbone.device
        want_values = with_values and self.value_head is not None
        lps: list[torch.Tensor] = []
        ents: list[torch.Tensor] = []
        states: list[torch.Tensor | None] = []
        with_query: list[int] = []
        for i, (p, cs, c) in enumerate(zip(prompts, candidates, chosen, strict=True)):
            cs = list(cs)
            if not cs:
                lps.append(torch.zeros((), device=dev))
                ents.append(torch.zeros((), device=dev))
                states.append(None)
                continue
            idx = cs.index(c) if isinstance(c, str) else int(c)
            if not 0 <= idx < len(cs):
                raise IndexError(f"decision {i}: chosen index {idx} outside {len(cs)} candidates")
            scores, state = self.backbone.score_candidates_and_state(p, cs, add_eos=self.add_eos)
            logp = torch.log_softmax(scores.float() / temperature, dim=0)
            lps.append(logp[idx])
            ents.append(-(logp.exp() * logp).sum())
            states.append(state)
            q = None if query_ids is None else query_ids[i]
            if q is not None and cs[idx].startswith(SEARCH_PREFIX):
                with_query.append(i)
        if with_query:
            sums = self.query_logprobs(
                [prompts[i] for i in with_query], [query_ids[i] for i in with_query], temperature
            )
            for j, i in enumerate(with_query):
                lps[i] = lps[i] + sums[j]
        values = None
        if want_values:
            missing = [i for i, s in enumerate(states) if s is None]
            extra = self.values([prompts[i] for i in missing]) if missing else None
            vals = []
            for i, s in enumerate(states):
                vals.append(self._head(s) if s is not None else extra[missing.index(i)])
            values = torch.stack(vals) if vals else torch.zeros(0, device=dev)
        return DecisionEval(
            torch.stack(lps) if lps else torch.zeros(0, device=dev),
            values,
            torch.stack(ents) if ents else torch.zeros(0, device=dev),
        )

    def decision_logprobs(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        chosen: Sequence[int | str],
        temperature: float,
        *,
        query_ids: Sequence[Sequence[int] | None] | None = None,
    ) -> torch.Tensor:
        """log P(chosen | prompt) of choice-mode decisions under the distribution that acted,
        shape (n,), differentiable (:meth:`evaluate_choices` without values): the PPO ratio's
        term. Equals ``Decision.logprob`` at the same temperature."""
        return self.evaluate_choices(
            prompts, candidates, chosen, temperature, query_ids=query_ids, with_values=False
        ).logprobs

    def evaluate_generations(
        self,
        prompts: Sequence[str],
        token_ids: Sequence[Sequence[int]],
        temperature: float,
        *,
        with_values: bool = True,
    ) -> tuple[list[torch.Tensor], DecisionEval]:
        """Generate-mode decisions: ``(per-token log p_T of the sampled ids, DecisionEval)``,
        one right-padded pass, differentiable; the per-token terms are PPO's per-token ratios'.
        The ids are scored as sampled (no end-of-turn token added)."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, not {temperature}")
        s = self.backbone.score_sequences(
            list(prompts),
            [list(t) for t in token_ids],
            temperature=float(temperature),
            entropies=True,
        )
        values = None
        if with_values and self.value_head is not None:
            values = self._head(s.prompt_states)
        ents = torch.stack([e.sum() for e in s.token_entropies]) if prompts else s.sums
        return s.token_logprobs, DecisionEval(s.sums, values, ents)

    def evaluate_decisions(
        self,
        decisions: Sequence[Decision],
        *,
        temperature: float | None = None,
        with_values: bool = True,
    ) -> DecisionEval:
        """:meth:`evaluate_choices` / :meth:`evaluate_generations` of stored decisions (either
        mode, in their order) at their own temperature, or ``temperature`` when given."""
        n = len(decisions)
        dev = self.backbone.device
        temps = [float(d.temperature if temperature is None else temperature) for d in decisions]
        groups: dict[tuple[str, float], list[int]] = {}
        for i, d in enumerate(decisions):
            groups.setdefault((d.mode, temps[i]), []).append(i)
        lps: list[torch.Tensor | None] = [None] * n
        vals: list[torch.Tensor | None] = [None] * n
        ents: list[torch.Tensor | None] = [None] * n
        for (mode, t), idx in groups.items():
            ds = [decisions[i] for i in idx]
            if mode == "choice":
                ev = self.evaluate_choices(
                    [d.prompt for d in ds],
                    [d.candidates for d in ds],
                    [d.index if d.index is not None else 0 for d in ds],
                    t,
                    query_ids=[d.query_ids for d in ds],
                    with_values=with_values,
                )
            else:
                if any(d.token_ids is None for d in ds):
                    raise ValueError("a generate-mode decision without token_ids cannot be scored")
                _, ev = self.evaluate_generations(
                    [d.prompt for d in ds], [d.token_ids for d in ds], t, with_values=with_values
                )
            for j, i in enumerate(idx):
                lps[i], ents[i] = ev.logprobs[j], ev.entropies[j]
                vals[i] = None if ev.values is None else ev.values[j]
        if n == 0:
            empty = torch.zeros(0, device=dev)
            return DecisionEval(empty, empty if self.value_head is not None else None, empty)
        values = None
        if with_values and self.value_head is not None:
            values = torch.stack(vals)
        return DecisionEval(torch.stack(lps), values, torch.stack(ents))

    def token_logprobs(
        self, prompts: Sequence[str], actions: Sequence[str | Sequence[int]]
    ) -> list[torch.Tensor]:
        """Per-token log pi of each action given its prompt (a list of 1-D tensors; an action
        string gets the end-of-turn token last when ``add_eos``, token ids are scored as given);
        one right-padded batch; differentiable."""
        return self.backbone.sequence_logprobs(prompts, actions, add_eos=self.add_eos)[0]

    def action_logprobs(
        self,
        prompts: Sequence[str],
        actions: Sequence[str | Sequence[int]],
        *,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """log pi(action | prompt) per pair, shape (n,): the sum of :meth:`token_logprobs`.

        The sequence likelihood behaviour cloning maximises; NOT the acting distribution of
        choice mode (use :meth:`decision_logprobs` for PPO ratios). One right-padded batch
        (padding masked, so a pair scores the same alone or batched), or chunks of
        ``batch_size``. Differentiable unless called under ``torch.no_grad()``.
        """
        if len(prompts) != len(actions):
            raise ValueError(f"{len(prompts)} prompts but {len(actions)} actions")
        if batch_size is None or len(prompts) <= batch_size:
            return self.backbone.sequence_logprobs(prompts, actions, add_eos=self.add_eos)[1]
        parts = [
            self.backbone.sequence_logprobs(
                prompts[a : a + batch_size], actions[a : a + batch_size], add_eos=self.add_eos
            )[1]
            for a in range(0, len(prompts), batch_size)
        ]
        return torch.cat(parts)

    # ------------------------------------------------------------------ checkpoints
