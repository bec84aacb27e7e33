"""A pretrained causal language model as a pglab policy (Hugging Face ``transformers``, ``peft``).

:class:`PretrainedPolicy` is a :class:`~pglab.nets.base.Policy` over token-sequence
observations (:class:`~pglab.envs.spaces.TokenSequence`, ``env=dialogue_text``) whose
tokens are the model's own: it reads the chat-formatted prompt and the reply so far and
gives the next token's distribution, ``softmax(logits / temperature)``. The algorithms use
it as they use pglab's own transformer (:class:`~pglab.nets.transformer.TokenPolicy`):

* rollouts sample through :class:`LMSampler`, the model's own key-value cache, one position
  per new token (top-p where ``algo.policy.top_p < 1``);
* the update scores each whole reply in one causal pass (:meth:`PretrainedPolicy.episode_log_probs`);
* with LoRA (``algo.policy.lora.r > 0``) only the adapters train, and the KL reference is
  the same model with its adapters switched off (:class:`AdaptersOff`): no second copy.

**Positions.** An observation's prompt is left-padded with the env's ``pad_id``; those
positions are masked out of attention, and position ids count only the real tokens
(``cumsum(mask) - 1``), so a padded prompt reads exactly as the unpadded one, in a full
pass and through the cache alike.

The ``transformers`` and ``peft`` imports happen on first use: the core install does not
have them (``pip install -e ".[lm]"``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch.distributions import Categorical

from pglab.config import ConfigError, ModelDtype, PolicyConfig, first_line
from pglab.envs.spaces import TokenSequence
from pglab.models import LM_EXTRA, FetchError, ModelSource, resolve, transformers_module
from pglab.nets.base import Policy, terms_from_log_probs

if TYPE_CHECKING:
    from transformers import PreTrainedModel

DTYPES = {ModelDtype.float32: torch.float32, ModelDtype.bfloat16: torch.bfloat16, ModelDtype.float16: torch.float16}


def source_of(model: str | None) -> ModelSource:
    """Where ``algo.policy.model`` is loaded from; a one-line ConfigError if it cannot be."""
    if not model:
        raise ConfigError("algo.policy.model: a pretrained policy needs a model (e.g. policy=smollm2_135m)")
    try:
        return resolve(model)
    except FetchError as err:
        raise ConfigError(f"algo.policy.model={model!r}: {err}") from None


def _loading(model: str | None, load: Any) -> Any:
    """``load()``, a failure of which is one line naming ``algo.policy.model``."""
    try:
        return load()
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"algo.policy.model={model!r}: cannot load it as a causal language model: {first_line(err)}"
        ) from None


def load_model(cfg: PolicyConfig) -> PreTrainedModel:
    """A fresh copy of the causal LM ``cfg.model`` in ``cfg.dtype``, with LoRA adapters
    when ``cfg.lora.r > 0`` (then only they require gradients), in training mode (LoRA's
    dropout and gradient checkpointing act in the update's passes; sampling switches to
    evaluation mode, :func:`sampling`)."""
    source = source_of(cfg.model)
    auto = transformers_module().AutoModelForCausalLM
    model = _loading(
        cfg.model, lambda: auto.from_pretrained(source.path, gguf_file=source.gguf_file, dtype=DTYPES[cfg.dtype])
    )
    model.generation_config.pad_token_id = model.generation_config.eos_token_id
    if cfg.lora.r > 0:
        model = _with_lora(model, cfg)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.lora.r > 0:
            model.enable_input_require_grads()
    model.train()
    return model


@contextlib.contextmanager
def sampling(model: Any) -> Iterator[None]:
    """Evaluation mode for the passes that sample: no dropout, and the key-value cache
    (which gradient checkpointing switches off in training mode)."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _with_lora(model: PreTrainedModel, cfg: PolicyConfig) -> Any:
    try:
        import peft
    except ImportError:
        raise ConfigError(f"algo.policy.lora.r={cfg.lora.r}: LoRA adapters need peft: {LM_EXTRA}") from None
    lora = peft.LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        return peft.get_peft_model(model, lora)
    except ValueError as err:
        names = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ConfigError(
            f"algo.policy.lora.target_modules={list(cfg.lora.target_modules)}: {str(err).splitlines()[0]} "
            f"(the model's linear layers: {', '.join(names)})"
        ) from None


def memory_bytes(cfg: PolicyConfig, optimizer_states: int) -> int:
    """Bytes of the policy's weights (in ``cfg.dtype``; twice without LoRA: the frozen
    reference), and of the trainable parameters' float32 gradients and ``optimizer_states``
    moments: all weights, or the LoRA adapters (``r · (in + out)`` per adapted layer).
    Counted on the meta device: nothing is loaded."""
    source = source_of(cfg.model)
    transformers = transformers_module()
    config = _loading(
        cfg.model, lambda: transformers.AutoConfig.from_pretrained(source.path, gguf_file=source.gguf_file)
    )
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    weights = sum(p.numel() for p in model.parameters())
    if cfg.lora.r > 0:
        targets = set(cfg.lora.target_modules)
        linears = [
            m
            for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets
        ]
        trainable = sum(cfg.lora.r * (m.in_features + m.out_features) for m in linears)
    else:
        trainable = weights
    copies = 1 if cfg.lora.r > 0 else 2
    return weights * DTYPES[cfg.dtype].itemsize * copies + trainable * 4 * (1 + optimizer_states)


def prompt_mask(tokens: torch.Tensor, prompt_width: int, pad_id: int) -> torch.Tensor:
    """``[B, L]`` bool: which positions of ``tokens[B, L]`` hold a token (the prompt's left
    padding does not; every reply position does: later ones are causally invisible)."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    return (tokens != pad_id) | (positions >= prompt_width)


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` each position's index among its row's real tokens (0 on padding)."""
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


def draw(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """One token per row of ``logits[B, V]``, from its softmax restricted to the smallest set
    of most probable tokens whose probability reaches ``top_p`` (1: the whole softmax)."""
    probs = torch.softmax(logits.float(), dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the more probable tokens
        sorted_p = torch.where(before < top_p, sorted_p, 0.0)  # the most probable always stays
        probs = torch.zeros_like(probs).scatter_(1, order, sorted_p)
    return torch.multinomial(probs, 1).squeeze(1)


class PretrainedPolicy(Policy):
    """π(next token | prompt, reply so far) of a pretrained causal LM; see the module docstring.

    Args:
        model: the causal LM (a ``peft`` model with LoRA).
        cfg: ``algo.policy``.
        space: the env's observations (the model's token ids, ``pad_id`` left of prompts).
    """

    sequence: ClassVar[bool] = True

    def __init__(self, model: Any, cfg: PolicyConfig, space: TokenSequence) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.temperature, self.top_p = cfg.temperature, cfg.top_p
        self.vocab_size = space.vocab_size
        self.prompt_width, self.pad_id = space.prompt_width, space.pad_id
        self.context = space.prompt_width + space.reply_width
        self.lora = cfg.lora.r > 0
        self._act_sampler: LMSampler | None = None
        if self.lora:  # the base model is algo.policy.model: a state of the adapters alone, at any depth
            self.register_state_dict_post_hook(_adapters_only)
            self.register_load_state_dict_post_hook(_base_weights_not_missing)

    @property
    def body(self) -> Any:
        """The model (the policy's hidden layers are all of it); not a second submodule, so
        the state dict names each weight once."""
        return self.model

    @classmethod
    def load(cls, cfg: PolicyConfig, space: TokenSequence) -> PretrainedPolicy:
        """The policy of ``cfg.model`` for observations of ``space``."""
        model = load_model(cfg)
        width = model.get_output_embeddings().weight.shape[0]
        if width < space.vocab_size:
            raise ConfigError(
                f"algo.policy.model={cfg.model!r}: its {width} output tokens are fewer than the env's "
                f"tokenizer's {space.vocab_size}; the env must use the policy's own tokenizer"
            )
        return cls(model, cfg, space)

    # ----------------------------------------------------------------- forward passes

    def forward_logits(self, tokens: torch.Tensor, mask: torch.Tensor, keep: int | torch.Tensor = 0) -> torch.Tensor:
        """Tempered float32 logits ``[B, K, V]`` of ``tokens[B, L]`` (``mask[B, L]``: real
        tokens), at the last ``keep`` positions (an int, 0: all) or at positions ``keep[K]``."""
        return self.run(tokens, mask, keep)[0]

    def run(
        self, tokens: torch.Tensor, mask: torch.Tensor, keep: int | torch.Tensor = 0, cache: Any = None
    ) -> tuple[torch.Tensor, Any]:
        """:meth:`forward_logits`, and with ``cache`` (a ``DynamicCache``) the keys and values
        of these positions stored in it: ``(logits, the cache)``."""
        out = self.model(
            input_ids=tokens,
            attention_mask=mask.long(),
            position_ids=position_ids(mask),
            logits_to_keep=keep,
            past_key_values=cache,
            use_cache=cache is not None,
        )
        return self.scale(out.logits), out.past_key_values

    def scale(self, logits: torch.Tensor) -> torch.Tensor:
        """The policy's logits from the model's: the env's vocabulary, float32, ``/ temperature``."""
        return logits[..., : self.vocab_size].float() / self.temperature

    def _split(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obs = obs.long()
        return obs[:, : self.context], obs[:, self.context]

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, V]`` next-token logits of observations ``obs[B, P+R+1]``, one full pass."""
        tokens, written = self._split(obs)
        length = self.prompt_width + int(written.max())
        tokens = tokens[:, :length]
        at = self.prompt_width - 1 + written  # [B]
        keep, index = torch.unique(at, return_inverse=True)
        logits = self.forward_logits(tokens, prompt_mask(tokens, self.prompt_width, self.pad_id), keep)
        return logits[torch.arange(obs.shape[0], device=obs.device), index]

    def distribution(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits(obs), validate_args=False)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits(obs).argmax(dim=-1)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        return draw(self.logits(obs), self.top_p)

    def log_probs(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.logits(obs), dim=-1)

    def log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return terms_from_log_probs(self.log_probs(obs), actions)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """As every policy's ``act``, through a key-value cache kept between calls: a batch
        whose rows continue the previous call's episodes runs one position per row (the
        cache notices parameters that changed since, and starts afresh)."""
        if self._act_sampler is None:
            self._act_sampler = LMSampler(self)
        logits = self._act_sampler.logits(obs)
        return logits.argmax(dim=-1) if deterministic else draw(logits, self.top_p)

    def sampler(self) -> LMSampler:
        """A sampler for rollouts through the model's key-value cache."""
        return LMSampler(self)

    def drop_act_cache(self) -> None:
        """Free the key-value cache :meth:`act` keeps (an evaluation's: a rollout begins)."""
        self._act_sampler = None

    # ----------------------------------------------------------------- whole episodes

    def episode_log_probs(self, first_obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``[T, N, V]`` log-probabilities of every next token at each step of whole replies.

        Args:
            first_obs: ``[N, P+R+1]`` the episodes' first observations (the prompt).
            actions: long ``[T, N]`` the tokens written at steps ``0..T-1``; steps after a
                reply's end may hold anything (causality keeps them out of earlier steps).
        """
        steps = actions.shape[0]
        p = self.prompt_width
        tokens = torch.cat([first_obs[:, :p].long(), actions.t()[:, : steps - 1]], dim=1)  # [N, P+T-1]
        logits = self.forward_logits(tokens, prompt_mask(tokens, p, self.pad_id), keep=steps)  # [N, T, V]
        return torch.log_softmax(logits, dim=-1).transpose(0, 1)

    def episode_log_probs_all(self, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``[B, V]`` of the valid steps of whole episodes ``obs[T, N, P+R+1]``, one causal pass."""
        return self.episode_log_probs(obs[0], actions)[valid]

    def episode_terms(
        self, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logp [B], entropy [B])`` of the valid steps of whole episodes, one causal pass."""
        return terms_from_log_probs(self.episode_log_probs_all(obs, actions, valid), actions[valid])

    # ----------------------------------------------------------------- reference, checkpoints

    def reference_copy(self) -> Policy:
        """The KL reference, the initial model: with LoRA the base model with its adapters
        off (:class:`AdaptersOff`, no copy), else a frozen copy."""
        if self.lora:
            return AdaptersOff(self)
        return super().reference_copy()

    def trainable_names(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def parameter_versions(self) -> tuple[int, ...]:
        """In-place update counters of the trainable parameters (an optimiser step changes them)."""
        return tuple(p._version for p in self.parameters() if p.requires_grad)


def _adapters_only(module: PretrainedPolicy, state: dict[str, Any], prefix: str, _meta: Any) -> None:
    """A LoRA policy's state dict holds its adapters (the trainable parameters) only."""
    keep = {prefix + name for name in module.trainable_names()}
    for key in [k for k in state if k.startswith(prefix) and k not in keep]:
        del state[key]


def _base_weights_not_missing(module: PretrainedPolicy, incompatible: Any) -> None:
    """Loading a LoRA policy's state: the base model's weights are not missing (they come
    from ``algo.policy.model``); a missing adapter still is."""
    adapters = module.trainable_names()

    def is_adapter(key: str) -> bool:
        return any(key == name or key.endswith("." + name) for name in adapters)

    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if is_adapter(k)]


class AdaptersOff(Policy):
    """The base model of a LoRA :class:`PretrainedPolicy`: the same modules, the adapters
    switched off for each pass. It holds no parameters of its own (its state is empty), so
    the reference costs no memory and a checkpoint does not carry the base model twice."""

    sequence: ClassVar[bool] = True

    def __init__(self, policy: PretrainedPolicy) -> None:
        super().__init__()
        object.__setattr__(self, "of", policy)  # not a submodule: its weights are the policy's

    def _off(self) -> Any:
        return self.of.model.disable_adapter()

    def episode_log_probs_all(self, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        with self._off():
            return self.of.episode_log_probs_all(obs, actions, valid)

    def log_probs(self, obs: torch.Tensor) -> torch.Tensor:
        with self._off():
            return self.of.log_probs(obs)

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        with self._off():
            return self.of.logits(obs)


class LMSampler:
    """Samples next tokens for N envs through the model's key-value cache.

    The cache's columns are steps, not reply positions: each call appends one column for
    every row. A row whose observation continues its cached episode (one more token
    written) feeds that token; a row that started a new episode (autoreset) is prefilled
    alone, its prompt written into the first columns of its cache row and the columns
    after masked out, while the other rows step on. When no row continues, when the cache
    has grown to ``2·(P + R)`` columns, or after the parameters changed, every row is
    prefilled from its observation. Position ids count each row's real tokens, so a
    token's logits do not depend on the columns its row skipped.

    ``reset()`` after every update (as every sampler); the cache also notices parameter
    changes by the parameters' in-place update counters.
    """

    def __init__(self, policy: PretrainedPolicy) -> None:
        self.policy = policy
        self.cache: Any = None
        self.key_ok = torch.zeros(0, 0, dtype=torch.bool)  # [N, L] columns that hold a real token
        self.written = torch.zeros(0, dtype=torch.long)  # [N] reply tokens each row's cache covers
        self.versions: tuple[int, ...] = ()

    def reset(self) -> None:
        """Forget the cache (the parameters changed); a rollout begins, so the policy's
        evaluation cache goes too."""
        self.cache = None
        if self.policy._act_sampler is not self:
            self.policy.drop_act_cache()

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return draw(self.logits(obs), self.policy.top_p)

    @torch.no_grad()
    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """``[N, V]`` next-token logits of ``obs[N, P+R+1]``, equal to ``policy.logits(obs)``."""
        with sampling(self.policy.model):
            return self._logits(obs)

    def _logits(self, obs: torch.Tensor) -> torch.Tensor:
        policy = self.policy
        tokens, written = policy._split(obs)
        versions = policy.parameter_versions()
        fresh = torch.ones_like(written, dtype=torch.bool)
        if self.cache is not None and self.written.shape == written.shape and versions == self.versions:
            fresh = ~(written == self.written + 1)
        self.versions = versions
        limit = 2 * policy.context
        if bool(fresh.all()) or self.key_ok.shape[1] >= limit:
            return self._prefill_all(tokens, written)
        out = torch.empty(obs.shape[0], policy.vocab_size, device=obs.device)
        rows = torch.nonzero(fresh).flatten()
        if rows.numel():
            if int(written[rows].max()) + policy.prompt_width > self.key_ok.shape[1]:
                return self._prefill_all(tokens, written)
            out[rows] = self._prefill_rows(tokens, written, rows)
        going = torch.nonzero(~fresh).flatten()
        out[going] = self._step(tokens, written, ~fresh)[going]
        self.written = written.clone()
        return out

    def _prefill(self, tokens: torch.Tensor, written: torch.Tensor) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """One pass over rows ``tokens[M, P+R]`` up to each one's last written token:
        ``(logits [M, V] there, the new cache, its mask [M, L])``."""
        policy, p = self.policy, self.policy.prompt_width
        length = p + int(written.max())
        seq = tokens[:, :length]
        positions = torch.arange(length, device=seq.device)
        mask = (seq != policy.pad_id) & (positions < p) | (positions >= p) & (positions < (p + written)[:, None])
        keep, index = torch.unique(p - 1 + written, return_inverse=True)
        logits, cache = policy.run(seq, mask, keep, cache=transformers_module().DynamicCache())
        return logits[torch.arange(seq.shape[0], device=seq.device), index], cache, mask

    def _prefill_all(self, tokens: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        logits, self.cache, self.key_ok = self._prefill(tokens, written)
        self.written = written.clone()
        return logits

    def _prefill_rows(self, tokens: torch.Tensor, written: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Prefill ``rows`` alone and write their keys and values into the first columns of
        their cache rows (the rest of each row masked out); their logits ``[M, V]``."""
        logits, cache, mask = self._prefill(tokens[rows], written[rows])
        length = mask.shape[1]
        for big, small in zip(self.cache.layers, cache.layers, strict=True):
            big.keys[rows, :, :length] = small.keys
            big.values[rows, :, :length] = small.values
        self.key_ok[rows] = False
        self.key_ok[rows, :length] = mask
        return logits

    def _step(self, tokens: torch.Tensor, written: torch.Tensor, going: torch.Tensor) -> torch.Tensor:
        """Append one column for every row: the last written token of the ``going`` rows,
        a masked-out filler for the others; the logits there ``[N, V]``."""
        policy = self.policy
        at = (policy.prompt_width - 1 + written).clamp(max=tokens.shape[1] - 1)
        token = tokens.gather(1, at[:, None])  # [N, 1]
        position = self.key_ok.long().sum(dim=1, keepdim=True)  # [N, 1] real tokens before it
        self.key_ok = torch.cat([self.key_ok, going[:, None]], dim=1)
        out = policy.model(
            input_ids=token,
            attention_mask=self.key_ok.long(),
            position_ids=position,
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache = out.past_key_values
        return policy.scale(out.logits[:, -1])
