"""A small decoder-only transformer with a paged KV cache, and a byte-level tokenizer.

Weights come from a fixed seed, so every run of the reference workload serves the same model. The
keys and values of every token live in one flat pool of slots (`num_blocks * block_size`) per
layer; a sequence's tokens are wherever its block table says. Prefill computes a batch of whole
sequences (causal attention within each) and writes their keys and values into their slots; decode
reads each sequence's keys and values back through its block table.
"""

from __future__ import annotations

import codecs
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BOS, EOS = 256, 257
VOCAB = 258


class ByteTokenizer:
    """UTF-8 bytes are tokens 0-255; 256 starts a prompt, 257 ends a completion."""

    bos, eos, vocab_size = BOS, EOS, VOCAB

    def encode(self, text: str) -> list[int]:
        return [BOS, *text.encode("utf-8")]

    def decoder(self) -> codecs.IncrementalDecoder:
        """Decodes a stream of tokens without splitting multi-byte characters."""
        return codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, tokens: list[int]) -> str:
        return bytes(t for t in tokens if t < 256).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "vigil-tiny-lm"
    vocab_size: int = VOCAB
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    max_model_len: int = 2048
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass
class AttentionGroup:
    """Sequences that attend together on a padded `[B, Q, S]` layout.

    Decodes (one new token each) form one group and prefills another, so a step that mixes them
    does not pad every decode row to the longest prompt.
    """

    index: torch.Tensor  # [Tg] the group's new tokens, as indices into the step's flat tokens
    row: torch.Tensor  # [Tg] their sequence's row in the group
    column: torch.Tensor  # [Tg] their index among their sequence's new tokens
    read: torch.Tensor  # [B, S] cache slots of each sequence's tokens, padded
    mask: torch.Tensor  # [B, 1, Q, S] a query sees keys at or before its own position
    width: int  # Q: most new tokens of one sequence in the group


@dataclass
class StepBatch:
    """One engine step as tensors: every sequence's new tokens, flattened, and where they go.

    Linear layers run on the flat `[T, d]` tokens; attention runs per group of sequences,
    reading each sequence's keys and values (history and this step's) from the cache through its
    block table. A decode is a sequence with one new token; a prefill (or a recompute after
    preemption) is one with all its tokens new. Both share one forward pass.
    """

    tokens: torch.Tensor  # [T] new tokens
    positions: torch.Tensor  # [T] their positions in their sequences
    write: torch.Tensor  # [T] cache slots they are written to
    last: torch.Tensor  # [B] index in T of each sequence's last new token
    groups: list[AttentionGroup]

    @classmethod
    def build(
        cls,
        new_tokens: list[list[int]],
        starts: list[int],
        tables: list[list[int]],
        block_size: int,
        device: torch.device,
    ) -> StepBatch:
        """`new_tokens[i]` start at position `starts[i]` of sequence i, whose block table is `tables[i]`."""
        tokens: list[int] = []
        positions: list[int] = []
        write: list[int] = []
        last: list[int] = []
        spans: list[range] = []
        for chunk, start, table in zip(new_tokens, starts, tables, strict=True):
            spans.append(range(len(tokens), len(tokens) + len(chunk)))
            tokens.extend(chunk)
            positions.extend(range(start, start + len(chunk)))
            write.extend(table[p // block_size] * block_size + p % block_size for p in range(start, start + len(chunk)))
            last.append(len(tokens) - 1)
        members = (
            [i for i, c in enumerate(new_tokens) if len(c) == 1],
            [i for i, c in enumerate(new_tokens) if len(c) > 1],
        )
        groups = [_group(rows, spans, positions, tables, block_size, device) for rows in members if rows]
        as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
        return cls(as_tensor(tokens), as_tensor(positions), as_tensor(write), as_tensor(last), groups)


def _group(
    rows: list[int],
    spans: list[range],
    positions: list[int],
    tables: list[list[int]],
    block_size: int,
    device: torch.device,
) -> AttentionGroup:
    index, row, column = [], [], []
    for r, seq in enumerate(rows):
        index.extend(spans[seq])
        row.extend([r] * len(spans[seq]))
        column.extend(range(len(spans[seq])))
    blocks = max(len(tables[seq]) for seq in rows)
    padded = [tables[seq] + [0] * (blocks - len(tables[seq])) for seq in rows]  # padding is masked out
    table = torch.tensor(padded, dtype=torch.long, device=device)
    read = (table[:, :, None] * block_size + torch.arange(block_size, device=device)).reshape(len(rows), -1)
    width = max(len(spans[seq]) for seq in rows)
    index_t = torch.tensor(index, dtype=torch.long, device=device)
    row_t = torch.tensor(row, dtype=torch.long, device=device)
    column_t = torch.tensor(column, dtype=torch.long, device=device)
    query_pos = torch.full((len(rows), width), -1, dtype=torch.long, device=device)
    query_pos[row_t, column_t] = torch.tensor([positions[i] for i in index], dtype=torch.long, device=device)
    mask = torch.arange(read.shape[1], device=device)[None, None, :] <= query_pos[:, :, None]
    mask[:, :, 0] |= query_pos < 0  # padding queries look at one key, so no row is all -inf
    return AttentionGroup(index_t, row_t, column_t, read, mask[:, None], width)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))

    def forward(self, x: torch.Tensor, batch: StepBatch, cache: KVCache, layer: int) -> torch.Tensor:
        cfg = self.cfg
        heads, dim = cfg.n_heads, cfg.head_dim
        q, k, v = self.qkv(self.ln1(x)).split(cfg.d_model, dim=-1)
        q = q.reshape(-1, heads, dim)
        cache.k[layer][batch.write] = k.reshape(-1, heads, dim)
        cache.v[layer][batch.write] = v.reshape(-1, heads, dim)
        out = torch.empty_like(q)
        for g in batch.groups:
            rows, span = g.read.shape
            flat = g.read.reshape(-1)  # index_select is several times faster than advanced indexing here
            keys = cache.k[layer].index_select(0, flat).view(rows, span, heads, dim).transpose(1, 2)
            values = cache.v[layer].index_select(0, flat).view(rows, span, heads, dim).transpose(1, 2)
            if g.width == 1:  # decodes: one query per sequence, in row order
                queries = q.index_select(0, g.index).view(rows, 1, heads, dim)
            else:
                queries = q.new_zeros(rows, g.width, heads, dim)
                queries[g.row, g.column] = q.index_select(0, g.index)
            att = F.scaled_dot_product_attention(queries.transpose(1, 2), keys, values, attn_mask=g.mask)
            out[g.index] = att.transpose(1, 2)[g.row, g.column]
        x = x + self.out(out.reshape(x.shape))
        return x + self.mlp(self.ln2(x))


class KVCache:
    """Keys and values for `num_blocks * block_size` token slots per layer."""

    def __init__(self, cfg: ModelConfig, num_blocks: int, block_size: int, device: torch.device) -> None:
        shape = (num_blocks * block_size, cfg.n_heads, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device) for _ in range(cfg.n_layers)]
        self.block_size = block_size
        self.device = device

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))


class TinyLM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(cfg.seed)  # the same weights on every start
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_model_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln = nn.LayerNorm(cfg.d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=1.0 / math.sqrt(p.shape[-1]))
        torch.random.set_rng_state(generator_state)
        # The weights are random, so the model speaks printable ASCII (and can end) by construction.
        allowed = torch.zeros(cfg.vocab_size, dtype=torch.bool)
        allowed[32:127] = True
        allowed[ord("\n")] = allowed[EOS] = True
        self.register_buffer("vocab_bias", torch.where(allowed, 0.0, float("-inf")), persistent=False)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.inference_mode()
    def forward(self, batch: StepBatch, cache: KVCache) -> torch.Tensor:
        """Write the new tokens' keys and values; return logits after each sequence's last new token."""
        x = self.tok(batch.tokens) + self.pos(batch.positions)
        for layer, block in enumerate(self.blocks):
            x = block(x, batch, cache, layer)
        return self.ln(x[batch.last]) @ self.tok.weight.T + self.vocab_bias  # tied input and output embeddings


def sample(logits: torch.Tensor, temperatures: list[float], generators: list[torch.Generator | None]) -> list[int]:
    """Greedy where temperature is 0, else a draw from softmax(logits / temperature)."""
    greedy = logits.argmax(dim=-1).tolist()
    out = []
    for row, (temperature, generator) in enumerate(zip(temperatures, generators, strict=True)):
        if temperature <= 0:
            out.append(greedy[row])
            continue
        probs = torch.softmax(logits[row].float() / temperature, dim=-1)
        out.append(int(torch.multinomial(probs.cpu(), 1, generator=generator).item()))
    return out


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return device
