"""The step-wise generator every front end drives (CLI, Pipeline, benchmarks, the torch reference).

    gen = Generator(backend, batch=4, classes=[0, 1, 2, 3], params=SamplingParams(seed=0))
    gen.append_prefix(prefix)      # optional, before the first step: image completion
    while not gen.is_done():
        gen.step()                 # one token (position + content) for every active sample
        images = gen.preview()     # optional: decode what is known so far
    tokens = gen.sequences()       # right-padded TokenBatch

One step for token t+1 (token t is known for every sample):
  position logits of token t  -> grammar mask + sampling (or forced)  -> position[t+1]
  content_step(position[t+1]) -> code mask + sampling (or forced)     -> content[t+1]
Coarse to fine: the coarse stream ends with its EOS, then the fine start token is forced, then
the fine stream runs until its EOS (grammar in dq_edge.generation.grammar). Samples stop
independently; finished rows are fed PAD tokens whose outputs are ignored.

Every sample has its own token index t[b] (`step` of the backend is per row): `admit(row, ...)`
restarts a finished row with a new image at t = 0 while the others continue (continuous
batching, dq_edge.generation.batcher). A finished row that is not refilled keeps stepping on PAD
tokens, clamped to the end of the cache. With `seeds` (one per sample) every sample draws from
its own random stream, so an image's tokens do not depend on which row or batch it ran in.

Classifier-free guidance runs 2B backend rows (dq_edge.generation.guidance). A completion
prefix goes through `backend.prefill` up to the shortest prefix; the remaining prefix tokens
are forced step by step, and the grammar starts from the prefix's state.

Memory: token arrays, grammar state and sampler buffers are allocated once per generation;
a step allocates only [B]-sized vectors, plus the guided mix with guidance and [B, V] index
arrays with top-k / top-p.
"""

from __future__ import annotations

import numpy as np

from dq_edge.errors import DQEdgeError, InputError
from dq_edge.generation.backend import Backend
from dq_edge.generation.grammar import FINE_START, PositionMasks, content_code_mask
from dq_edge.generation.guidance import guide, row_classes
from dq_edge.generation.params import SamplingParams
from dq_edge.generation.code_maps import known_code_maps
from dq_edge.generation.requests import check_classes, plan_batch
from dq_edge.generation.rows import RowTokens
from dq_edge.generation.sampling import ImageStreams, TokenSampler, make_rng
from dq_edge.sequences import TokenBatch
from dq_edge.tokens import TokenLayout


def _uniform(t: np.ndarray) -> np.ndarray | int:
    """An int when every sample is at the same index (static batching: views, one slice store
    in the backend), else the per-sample indices."""
    return int(t[0]) if (t == t[0]).all() else t


class Generator:
    """dq-edge's sampler (correct masks) over any `Backend`, one token per `step()`."""

    def __init__(
        self,
        backend: Backend,
        batch: int,
        classes=None,
        params: SamplingParams = SamplingParams(),
        layout: TokenLayout | None = None,
        seeds=None,
    ):
        self.backend = backend
        self.layout = layout or backend.layout
        self.params = params
        self.plan = plan_batch(self.layout, batch, classes, params, backend.max_batch)
        self.batch = batch
        if seeds is not None and len(seeds) != batch:
            raise InputError(f"{len(seeds)} seeds for {batch} samples", "pass one seed per sample")
        self._seeds = seeds
        self._create_state()

    # ------------------------------------------------------------------ phase 1: start / prefill
    def _create_state(self) -> None:
        layout, params, batch = self.layout, self.params, self.batch
        dims = self.backend.dims
        self.rows = RowTokens(layout, batch, row_classes(self.plan.classes, layout.null_class_id, self.plan.guided), self.plan.guided)
        self.masks = PositionMasks(layout, batch, dims.position_vocab, params.fixed_fine_positions)
        T, greedy = params.temperature, params.greedy
        self._position_sampler = TokenSampler(batch, dims.position_vocab, T, params.top_k_pos, params.top_p_pos, greedy)
        self._content_sampler = TokenSampler(batch, dims.content_vocab, T, params.top_k, params.top_p, greedy)
        self._code_allowed = np.broadcast_to(content_code_mask(layout, dims.content_vocab), (batch, dims.content_vocab))
        self._grid = np.array([layout.n_coarse, layout.n_fine], dtype=np.int64)  # grid size by segment
        self._rng = make_rng(params.seed) if self._seeds is None else ImageStreams(self._seeds)
        self.lengths = np.zeros(batch, dtype=np.int64)  # set when a sample finishes
        self._prefix: TokenBatch | None = None
        self._prefix_len = np.ones(batch, dtype=np.int64)
        self._t: np.ndarray | None = None  # int64 [B]: index of each sample's newest token; None before the start
        self._logits: np.ndarray | None = None  # position logits for token t + 1
        self._cancelled = False

    def append_prefix(self, prefix: TokenBatch) -> None:
        """Known first tokens of every sample (image completion), before the first step: the
        shortest common part goes through the backend's prefill, the rest is forced later."""
        if self._t is not None:
            raise InputError("a prefix can only be given before the first step", "create a new generator")
        self._check_prefix(prefix)
        self._prefix, self._prefix_len = prefix, prefix.lengths.astype(np.int64)
        T0 = int(self._prefix_len.min())
        everyone = np.ones(self.batch, dtype=bool)
        for j in range(1, T0):
            self._check_segment(prefix.segment[:, j], self.masks.next_segment(), ~self.masks.done)
            self.masks.advance(prefix.position[:, j], everyone)
            self.rows.set_position(j, prefix.position[:, j], prefix.segment[:, j], everyone)
            self.rows.set_content(j, prefix.content[:, j], everyone)
        if self.masks.done.any():
            raise InputError("a prefix is already a complete sequence", "keep fewer tokens")
        self.backend.begin(self.plan.rows)
        r = self.rows
        self._logits = self.backend.prefill(r.content[:, :T0], r.position[:, :T0], r.segment[:, :T0])
        self._t = np.full(self.batch, T0 - 1, dtype=np.int64)

    def _start(self) -> None:
        self.backend.begin(self.plan.rows)
        self._logits = self.backend.position_step(*self.rows.column(0), 0)
        self._t = np.zeros(self.batch, dtype=np.int64)

    def admit(self, row: int, cls: int | None = None, seed: int | None = None) -> None:
        """Start a new image in sample row `row` (continuous batching), between two steps: the
        row restarts at token 0 with class `cls` and (with per-sample seeds) a fresh random
        stream from `seed`; the other rows continue where they are. Collect the row's finished
        sequence (`sequence(row)`) before."""
        if self._prefix is not None:
            raise InputError("a generation with a prefix cannot take new images", "generate completions in batches")
        if self._t is not None and self._logits is not None:
            raise InputError("admit a new image between two steps", "call step() first")
        if not 0 <= row < self.batch:
            raise InputError(f"row {row} is outside 0..{self.batch - 1}")
        cls = None if self.plan.classes is None else int(check_classes(self.layout, [cls], 1)[0])
        if self._seeds is not None:
            if seed is None:
                raise InputError("this generator draws per image: a new image needs its seed", "pass seed=")
            self._rng.reseed(row, seed)
        self.rows.restart(row, cls)
        self.masks.restart(row)
        self.lengths[row] = 0
        if self._t is not None:
            self._t[row] = 0  # its position step runs with the next step(), at cache row 0

    def _check_prefix(self, prefix: TokenBatch) -> None:
        layout, B = self.layout, self.batch
        if prefix.batch != B:
            raise InputError(f"prefix has {prefix.batch} rows for {B} samples", "pass one prefix row per sample")
        lengths = prefix.lengths
        if lengths.min() < 2 or lengths.max() > layout.max_length - 1:
            raise InputError(
                f"prefix lengths must be 2..{layout.max_length - 1}, got {int(lengths.min())}..{int(lengths.max())}",
                "keep at least the start token and one more, and leave something to generate",
            )
        first = (prefix.content[:, 0], prefix.position[:, 0], prefix.segment[:, 0])
        want = (self.rows.start_content[:B], self.rows.start_coarse[:B], np.zeros(B, np.int64))
        if any(not np.array_equal(a, b) for a, b in zip(first, want)):
            raise InputError("prefix does not begin with the start token of its sample's class", "build it with dq_edge.sequences")

    @staticmethod
    def _check_segment(given: np.ndarray, expected: np.ndarray, rows: np.ndarray) -> None:
        if (given[rows] != expected[rows]).any():
            raise InputError(
                "a prefix token has the wrong segment for its place in the sequence", "build prefixes with dq_edge.sequences"
            )

    # ------------------------------------------------------------------ phase 2: one step
    def step(self) -> int:
        """Generate token t+1 of every unfinished sample; returns how many samples got one."""
        if self.is_done():
            return 0
        if self._t is None:
            self._start()
        elif self._logits is None:  # the position stack has not seen token t yet
            t = _uniform(self._t)
            self._logits = self.backend.position_step(*self.rows.column(t), self.rows.backend_steps(t))
        t = self._t
        active = ~self.masks.done
        if (t[active] + 1 >= self.rows.content.shape[1]).any():
            raise DQEdgeError(f"generation ran past the longest legal sequence ({self.layout.max_length} tokens)", "report this as a bug")
        segment = self.masks.next_segment()
        starting = self.masks.phase == FINE_START
        position = self._next_positions(t, segment, active, starting)
        nxt = _uniform(t + 1)  # one object for both writes (RowTokens reuses the start rows)
        self.rows.set_position(nxt, position, segment, active, starting if self._prefix is None else None)
        _, next_position, next_segment = self.rows.column(nxt)
        c_logits = self.backend.content_step(next_position, next_segment, self.rows.backend_steps(_uniform(t)))
        content = self._next_contents(t, c_logits, position, segment)
        self.rows.set_content(nxt, content, active)  # start positions get their start content
        ended = active & self.masks.done
        self.lengths[ended] = t[ended] + 2
        # finished rows advance with the others (PAD tokens, outputs ignored) but never past the
        # furthest active row (which sets the cache bucket) nor the cache's end
        cap = min(int(t[active].max()) + 1 if active.any() else 0, self.rows.content.shape[1] - 2)
        self._t, self._logits = np.where(active, t + 1, np.minimum(t + 1, cap)), None
        return int(active.sum())

    def _forced(self, t: int) -> np.ndarray | None:
        """bool [B]: samples whose token t+1 comes from the prefix (None without a prefix)."""
        if self._prefix is None:
            return None
        forced = t + 1 < self._prefix_len
        return forced if forced.any() else None

    def _prefix_column(self, table: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Each sample's prefix token t+1 (clamped into the prefix table)."""
        return table[np.arange(self.batch), np.minimum(t + 1, table.shape[1] - 1)]

    def _next_positions(self, t: int, segment: np.ndarray, active: np.ndarray, starting: np.ndarray) -> np.ndarray:
        B, masks = self.batch, self.masks
        logits = guide(self._logits, B, self.params.cfg_scale)
        position = self._position_sampler(logits, masks.allowed_positions(), self._rng)
        if starting.any():
            position = np.where(starting, self.rows.start_fine[:B], position)
        forced = self._forced(t)
        if forced is not None:
            position = np.where(forced, self._prefix_column(self._prefix.position, t), position)
            self._check_segment(self._prefix_column(self._prefix.segment, t), segment, forced & active)
        masks.advance(position, active)
        return position

    def _next_contents(self, t: int, c_logits: np.ndarray, position: np.ndarray, segment: np.ndarray) -> np.ndarray:
        logits = guide(c_logits, self.batch, self.params.cfg_scale)
        content = self._content_sampler(logits, self._code_allowed, self._rng)
        on_grid = position < self._grid[segment]
        if not on_grid.all():
            content = np.where(on_grid, content, self.layout.content_eos)  # EOS positions carry the content EOS
        forced = self._forced(t)
        if forced is not None:
            content = np.where(forced, self._prefix_column(self._prefix.content, t), content)
        return content

    # ------------------------------------------------------------------ phase 3: finish
    def is_done(self) -> bool:
        return self._cancelled or bool(self.masks.done.all())

    def cancel(self) -> None:
        """Stop: no further steps; `sequences()` returns what was generated so far."""
        self._cancelled = True

    @property
    def finished(self) -> np.ndarray:
        """bool [B]: samples whose sequence is complete."""
        return self.masks.done.copy()

    def sequences(self) -> TokenBatch:
        """The samples' tokens (right-padded). Unfinished samples (after `cancel`, or before the
        end) hold the tokens known so far; their lengths count those tokens."""
        known = 1 if self._t is None else self._t + 1
        lengths = np.where(self.masks.done, self.lengths, known).astype(np.int64)
        T = int(lengths.max())
        B, r = self.batch, self.rows
        return TokenBatch(r.content[:B, :T].copy(), r.position[:B, :T].copy(), r.segment[:B, :T].copy(), lengths)

    def sequence(self, row: int) -> TokenBatch:
        """Sample row `row`'s tokens alone (a TokenBatch of one), e.g. before `admit` reuses it."""
        known = 1 if self._t is None else int(self._t[row]) + 1
        n = int(self.lengths[row]) if self.masks.done[row] else known
        r = self.rows
        return TokenBatch(r.content[row : row + 1, :n].copy(), r.position[row : row + 1, :n].copy(),
                          r.segment[row : row + 1, :n].copy(), np.array([n], dtype=np.int64))

    def code_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """(grain int64 [B,Hc,Wc], codes int64 [B,Hf,Wf]) of what is known so far: coarse-coded
        regions carry their code over their cells, fine cells their own code, cells not generated
        yet take code 0 (the official decoder's fill). A finished sample is its exact map."""
        return known_code_maps(self.layout, self.sequences())

    def preview(self) -> np.ndarray:
        """Decode what is known so far through the backend's decoder: float32 [B,3,H,W]. Once
        a sample's coarse stream is complete this is its coarse image (fine regions at code 0
        where not generated yet); once it is finished, its final image."""
        return self.backend.decode(self.code_maps()[1])
