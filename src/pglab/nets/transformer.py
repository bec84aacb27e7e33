"""A causal transformer policy and critic for token sequences (``env=dialogue_lm``).

:class:`CausalTransformer` is a small GPT-style decoder; :class:`TokenPolicy` reads it at
the reply's current position, :class:`TokenValue` is the critic. Three fast paths, each
equal to step-by-step computation: :meth:`TokenPolicy.episode_log_probs` scores whole
episodes in one causal pass, :func:`rollout_features` one pass per episode piece of a
rollout, and :class:`TokenSampler` generates through a :class:`KVCache`, one position per
new token.

Shapes: observations are ``[B, P+R+1]`` (prompt, reply, tokens written; see
:class:`~pglab.envs.spaces.TokenSequence`), V is the vocabulary size.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.distributions import Categorical

from pglab.config import TransformerConfig
from pglab.envs.spaces import TokenSequence
from pglab.nets.base import Policy, ValueFunction, terms_from_log_probs
from pglab.nets.mlp import linear_head


def transformer_body(space: TokenSequence, cfg: TransformerConfig) -> CausalTransformer:
    """A :class:`CausalTransformer` sized by ``cfg`` for observations of ``space``."""
    return CausalTransformer(
        vocab_size=space.vocab_size,
        context=space.prompt_width + space.reply_width,
        prompt_width=space.prompt_width,
        layers=cfg.layers,
        heads=cfg.heads,
        width=cfg.width,
        ff_mult=cfg.ff_mult,
    )


class CausalTransformer(nn.Module):
    """A small GPT-style decoder over a :class:`~pglab.envs.spaces.TokenSequence`.

    Learned token and position embeddings, ``layers`` pre-LayerNorm blocks (causal
    multi-head self-attention, then a GELU MLP of ``ff_mult · width``), a final LayerNorm.
    Prompt padding (``<pad>`` tokens, id 0, left of the prompt) is masked out as keys.

    Shapes: ``tokens[B, L] -> features[B, L, width]`` for any ``L <= P + R``.
    """

    def __init__(
        self, vocab_size: int, context: int, prompt_width: int, layers: int, heads: int, width: int, ff_mult: int
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"transformer width {width} must be a multiple of its heads ({heads})")
        self.prompt_width = prompt_width
        self.heads = heads
        self.tok = nn.Embedding(vocab_size, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(_Block(width, heads, ff_mult) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.register_buffer("causal", torch.ones(context, context, dtype=torch.bool).tril(), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        positions = torch.arange(length, device=tokens.device)
        x = self.tok(tokens) + self.pos(positions)
        pad = (tokens == 0) & (positions < self.prompt_width)  # [B, L] padding keys
        mask = self.causal[:length, :length] & ~pad[:, None, :]  # [B, L(query), L(key)]
        mask = (mask | torch.eye(length, dtype=torch.bool, device=tokens.device))[:, None]  # never an empty row
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, ff_mult: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, ff_mult * width), nn.GELU(), nn.Linear(ff_mult * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, kv: KVCache | None = None) -> torch.Tensor:
        """``x[B, L, width] -> [B, L, width]``. With ``kv`` (and its ``rows``, ``at``) the keys
        and values of these L positions are written into the cache first and the queries
        attend over the cache's whole context (``mask[B, 1, L, C]``): incremental decoding."""
        b, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        if kv is not None:
            k, v = kv.store(self, k, v)
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, L, width/H]
        x = x + self.proj(att.transpose(1, 2).reshape(b, length, width))
        return x + self.mlp(self.norm2(x))


class KVCache:
    """Keys and values of every layer for ``N`` sequences being written token by token.

    Generating a reply with a causal transformer recomputes nothing: each new token's keys
    and values are appended here and only that token runs through the network, so a step
    costs one position instead of the whole context. Rows are independent: each covers its
    own number of written reply tokens (``written[N]``, -1: nothing cached), so envs that
    restart (autoreset) or a policy that changed (after an update: :meth:`clear`) are
    refilled from their observation while the others step on.

    Shapes: keys and values ``[layers, N, heads, P + R, width/heads]``.
    """

    def __init__(self, body: CausalTransformer, n: int, device: torch.device) -> None:
        layers, heads = len(body.blocks), body.heads
        width, context = body.tok.embedding_dim, body.pos.num_embeddings
        self.k = torch.zeros(layers, n, heads, context, width // heads, device=device)
        self.v = torch.zeros_like(self.k)
        self.key_ok = torch.zeros(n, context, dtype=torch.bool, device=device)  # filled and not prompt padding
        self.written = torch.full((n,), -1, dtype=torch.long, device=device)
        self.layer = {id(block): i for i, block in enumerate(body.blocks)}
        self.rows: torch.Tensor = torch.zeros(0, dtype=torch.long)
        self.at: torch.Tensor | None = None  # positions being written: None = [0, L)

    def clear(self) -> None:
        """Forget every row (their keys and values came from other parameters)."""
        self.written.fill_(-1)

    def store(self, block: nn.Module, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v [M, H, L, d]`` of rows ``self.rows`` at their positions; return the keys
        and values to attend over: a prefill's own ``[M, H, L, d]``, else the rows' whole
        cache ``[M, H, C, d]``."""
        layer = self.layer[id(block)]
        if self.at is None:  # a prefill: positions [0, L)
            self.k[layer, self.rows, :, : k.shape[2]] = k
            self.v[layer, self.rows, :, : v.shape[2]] = v
            return k, v
        self.k[layer, self.rows, :, self.at] = k[:, :, 0]  # one new position per row
        self.v[layer, self.rows, :, self.at] = v[:, :, 0]
        if self.rows.numel() == self.k.shape[1]:  # every row steps (the usual case): no copy
            return self.k[layer], self.v[layer]
        return self.k[layer, self.rows], self.v[layer, self.rows]


def _split(obs: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens [B, P+R], written [B])`` of token-sequence observations ``[B, P+R+1]``."""
    obs = obs.long()
    return obs[:, :context], obs[:, context]


def rollout_features(
    body: CausalTransformer, obs: torch.Tensor, actions: torch.Tensor, dones: torch.Tensor, context: int
) -> torch.Tensor:
    """Features at every step of a rollout ``[T, N]`` from one causal pass per episode piece.

    A rollout of N envs over T steps (episodes continue across rollouts and restart inside
    them) splits each env's column into pieces of one episode each. The observation of a
    piece's last step, with that step's action written after it, holds every earlier step's
    context of the piece, so one forward over it serves them all: about ``N`` plus the
    number of episodes that ended sequences instead of ``T·N``.

    Args:
        body: the transformer.
        obs: ``[T, N, P+R+1]`` token-sequence observations.
        actions: ``[T, N]`` the tokens written at each step.
        dones: ``[T, N]`` episode ends (the next step starts a new episode).
        context: P + R.

    Returns:
        ``[T, N, width]``: what the body gives each step's observation at its current position.
    """
    steps, n = dones.shape
    p = body.prompt_width
    last = dones.clone()
    last[-1] = True  # a piece ends at an episode end or at the rollout's end
    # each step's piece: the index (in row-major [T, N] order of `last`) of its last step
    piece_of = torch.empty(steps, n, dtype=torch.long, device=obs.device)
    flat_index = torch.arange(steps * n, device=obs.device).view(steps, n)
    nxt = flat_index[-1]
    for t in range(steps - 1, -1, -1):
        nxt = torch.where(last[t], flat_index[t], nxt)
        piece_of[t] = nxt
    ends = torch.nonzero(last.flatten()).flatten()  # [M] flat indices of the pieces' last steps
    rank = torch.full((steps * n,), -1, dtype=torch.long, device=obs.device)
    rank[ends] = torch.arange(ends.numel(), device=obs.device)
    tokens, written = _split(obs.flatten(0, 1), context)  # [T·N, C], [T·N]
    seq = tokens[ends].clone()
    seq_written = written[ends]
    inside = seq_written < context - p  # a reply cut at R has no room (and needs none: nothing reads it)
    rows = torch.nonzero(inside).flatten()
    seq[rows, p + seq_written[rows]] = actions.flatten()[ends][rows]
    length = p + int(seq_written.max())  # positions up to the last step's own
    features = body(seq[:, :length])  # [M, length, width]
    at = p - 1 + written  # [T·N]
    piece = rank[piece_of.flatten()]
    return features[piece, at].view(steps, n, -1)


class TokenPolicy(Policy):
    """π(next token | prompt, reply so far): a causal transformer and a linear head over
    the vocabulary, read at the reply's current position (``P - 1 + written``).

    Besides the per-observation interface of every policy (``obs[B, P+R+1]``),
    :meth:`episode_log_probs` scores whole episodes in one causal pass: the last
    observation of an episode holds every earlier one, so ``T`` steps of ``N`` episodes
    cost one forward over ``[N, P+T]`` tokens instead of ``T`` forwards.
    """

    sequence: ClassVar[bool] = True

    def __init__(self, body: CausalTransformer, width: int, vocab_size: int, reply_width: int) -> None:
        super().__init__()
        self.body = body
        self.head = linear_head(width, vocab_size, gain=0.01)
        self.prompt_width = body.prompt_width
        self.context = body.prompt_width + reply_width

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, width]`` features at each observation's current position."""
        tokens, written = _split(obs, self.context)
        length = self.prompt_width + int(written.max())  # later positions cannot matter (causal)
        features = self.body(tokens[:, :length])
        at = (self.prompt_width - 1 + written).clamp(max=length - 1)
        return features[torch.arange(obs.shape[0], device=obs.device), at]

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, V]`` next-token logits."""
        return self.head(self._features(obs))

    def distribution(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits(obs), validate_args=False)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits(obs).argmax(dim=-1)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        return _draw(self.logits(obs))

    def log_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, V]`` log-probabilities of every next token."""
        return torch.log_softmax(self.logits(obs), dim=-1)

    def sampler(self) -> TokenSampler:
        """A sampler with a KV cache for rollouts: ``sampler(obs) -> actions``, as :meth:`sample`."""
        return TokenSampler(self)

    def cached_logits(self, obs: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """``[N, V]`` next-token logits of ``obs[N, P+R+1]``, as :meth:`logits`, through ``cache``.

        A row whose observation has one more written token than the cache covers runs that
        token alone; any other row (a new episode, a cleared cache) is refilled from its
        whole observation.
        """
        tokens, written = _split(obs, self.context)
        body, p = self.body, self.prompt_width
        step = (cache.written >= 0) & (written == cache.written + 1)
        out = torch.empty(obs.shape[0], self.head.out_features, device=obs.device)
        fresh = torch.nonzero(~step).flatten()
        if fresh.numel():  # prefill: the whole context of these rows, keys and values kept
            length = p + int(written[fresh].max())
            rows_tokens = tokens[fresh, :length]
            positions = torch.arange(length, device=obs.device)
            ok = (rows_tokens != 0) | (positions >= p)
            cache.key_ok[fresh] = False
            cache.key_ok[fresh, :length] = ok
            mask = (body.causal[:length, :length] & ok[:, None, :]) | torch.eye(
                length, dtype=torch.bool, device=obs.device
            )
            cache.rows, cache.at = fresh, None
            x = body.tok(rows_tokens) + body.pos(positions)
            for block in body.blocks:
                x = block(x, mask[:, None], cache)
            at = p - 1 + written[fresh]
            out[fresh] = self.head(body.norm(x[torch.arange(fresh.numel(), device=obs.device), at]))
        going = torch.nonzero(step).flatten()
        if going.numel():  # one new token per row: the last one written
            at = p - 1 + written[going]
            cache.rows, cache.at = going, at
            cache.key_ok[going, at] = True
            positions = torch.arange(cache.key_ok.shape[1], device=obs.device)
            mask = (cache.key_ok[going] & (positions[None, :] <= at[:, None]))[:, None, None, :]  # [M, 1, 1, C]
            x = (body.tok(tokens[going, at]) + body.pos(at))[:, None]  # [M, 1, width]
            for block in body.blocks:
                x = block(x, mask, cache)
            out[going] = self.head(body.norm(x[:, 0]))
        cache.written = written.clone()
        return out

    def log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp = self.log_probs(obs)
        entropy = -(logp.exp() * logp).sum(dim=-1)
        return logp.gather(1, actions.long()[:, None]).squeeze(1), entropy

    def rollout_log_probs(self, obs: torch.Tensor, actions: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """``[T, N, V]`` log-probabilities at every step of a rollout, one pass per episode
        piece (:func:`rollout_features`); row t is what :meth:`log_probs` gives ``obs[t]``."""
        features = rollout_features(self.body, obs, actions, dones, self.context)
        return torch.log_softmax(self.head(features), dim=-1)

    def episode_log_probs(self, first_obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of every next token at each step of whole episodes, in one pass.

        Args:
            first_obs: ``[N, P+R+1]`` the episodes' first observations (prompt, nothing written).
            actions: long ``[T, N]`` the tokens written at steps ``0..T-1`` (``T <= R``); steps
                after an episode's end may hold anything (causality keeps them out of the
                earlier steps).

        Returns:
            ``[T, N, V]``: row t is what :meth:`log_probs` gives on step t's observation.
        """
        steps = actions.shape[0]
        p = self.prompt_width
        tokens = first_obs[:, : p + steps].long().clone()
        tokens[:, p:] = actions.t()
        features = self.body(tokens[:, : p + steps - 1])[:, p - 1 :]  # [N, T, width]
        return torch.log_softmax(self.head(features), dim=-1).transpose(0, 1)

    def episode_terms(
        self, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logp [B], entropy [B])`` of the valid steps of whole episodes, one causal pass."""
        return terms_from_log_probs(self.episode_log_probs_all(obs, actions, valid), actions[valid])

    def episode_log_probs_all(self, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``[B, V]`` of the valid steps of whole episodes ``obs[T, N, P+R+1]``, one causal pass."""
        return self.episode_log_probs(obs[0], actions)[valid]

    def rollout_terms(
        self, obs: torch.Tensor, actions: torch.Tensor, dones: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logp [T·N], entropy [T·N])`` of a rollout, one pass per episode piece."""
        return terms_from_log_probs(self.rollout_log_probs_all(obs, actions, dones), actions.flatten())

    def rollout_log_probs_all(self, obs: torch.Tensor, actions: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """``[T·N, V]`` of a rollout, one pass per episode piece."""
        return self.rollout_log_probs(obs, actions, dones).flatten(0, 1)


def _draw(logits: torch.Tensor) -> torch.Tensor:
    """One index per row of ``logits[B, V]``, drawn from its softmax by inverse CDF: the first
    index whose cumulative probability reaches u ~ U[0, 1) (``multinomial`` costs 5x more)."""
    cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)
    u = torch.rand(logits.shape[0], 1, device=logits.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=logits.shape[1] - 1)


class TokenSampler:
    """Samples next tokens for a batch of envs with a :class:`KVCache` kept between calls.

    Call :meth:`reset` whenever the policy's parameters change (after an update): the
    cached keys and values would otherwise belong to the old policy.
    """

    def __init__(self, policy: TokenPolicy) -> None:
        self.policy = policy
        self.cache: KVCache | None = None

    def reset(self) -> None:
        if self.cache is not None:
            self.cache.clear()

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """``[N, V]`` next-token logits, as ``policy.logits(obs)``."""
        if self.cache is None or self.cache.k.shape[1] != obs.shape[0]:
            self.cache = KVCache(self.policy.body, obs.shape[0], obs.device)
        return self.policy.cached_logits(obs, self.cache)

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return _draw(self.logits(obs))


class TokenValue(ValueFunction):
    """V(s) of a token-sequence observation: a causal transformer (or a policy's, shared)
    and a scalar head at the current position. ``obs[B, P+R+1] -> [B]``."""

    sequence: ClassVar[bool] = True

    def __init__(self, body: CausalTransformer, width: int, reply_width: int) -> None:
        super().__init__()
        self.body = body
        self.head = linear_head(width, 1, gain=1.0)
        self.prompt_width = body.prompt_width
        self.context = body.prompt_width + reply_width

    def rollout_values(self, obs: torch.Tensor, actions: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """``[T, N]`` V at every step of a rollout, one pass per episode piece (:func:`rollout_features`)."""
        return self.head(rollout_features(self.body, obs, actions, dones, self.context)).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        tokens, written = _split(obs, self.context)
        length = self.prompt_width + int(written.max())
        features = self.body(tokens[:, :length])
        at = (self.prompt_width - 1 + written).clamp(max=length - 1)
        return self.head(features[torch.arange(obs.shape[0], device=obs.device), at]).squeeze(-1)
