"""The official sampler (`sample_from_scratch` of the DQ code), token for token, on any backend.

For reproducing the paper's numbers on imported official checkpoints; dq-edge's own sampler
(dq_edge.generation.generator) stays the default. The official rules, including its quirks:
- Lockstep streams: every sample stays in the coarse stream until all samples have sampled the
  coarse EOS; finished samples are fed coarse PAD tokens (content PAD, position PAD, segment 0),
  so the coarse stream is padded to the batch maximum *between* the streams and the fine
  tokens' absolute positions depend on the batch. Then every sample gets its fine start token
  at the same index, and the fine stream runs until all samples have sampled the fine EOS
  (finished samples: fine PAD tokens).
- Coarse positions: regions not sampled yet below Nc-1, and the EOS. The last region Nc-1 is
  never legal (an off-by-one), so it always ends up fine.
- Fine positions: every cell not sampled yet and not inside a coarse-coded region, and the EOS
  at any time (so cells can stay uncovered: they decode as code 0). Class models also forbid
  the cell with index Nc + 2 + class (the coarse class id is prepended to the forbidden list).
- Content: codes 0..K-1; at the step that samples an EOS position and after it, content PAD.
- The fine stream's content transformer sees each coarse row with the row's *own* position
  embedding (the coarse stream uses the next position): at the start of the fine stream the
  content stack's cache rows of the coarse stream are recomputed that way.
- Order of operations: temperature, mask, top-k, softmax, top-p, draw (one draw per sample for
  positions, then one for contents, per step; also for finished samples).
"""

from __future__ import annotations

import numpy as np

from dq_edge.errors import InputError
from dq_edge.generation.generator import Generator
from dq_edge.sequences import TokenBatch, pad_sequences
from dq_edge.tokens import SEGMENT_COARSE, SEGMENT_FINE


class OfficialGenerator(Generator):
    """The official sampling rules behind the Generator surface (no prefix, no guidance)."""

    def _create_state(self) -> None:
        super()._create_state()
        layout, B = self.layout, self.batch
        Vp, Vc = self.backend.dims.position_vocab, self.backend.dims.content_vocab
        self._stage = SEGMENT_COARSE
        self._ended = np.zeros(B, dtype=bool)  # sampled the EOS of the current stream
        self._all_done = False
        self._coarse_len = 0  # tokens of the (padded) coarse stream, known once it ends
        self._pos_allowed = np.zeros((B, Vp), dtype=bool)
        self._pos_allowed[:, : layout.n_coarse - 1] = True  # the off-by-one: region Nc-1 never
        self._pos_allowed[:, layout.position_eos(SEGMENT_COARSE)] = True
        self._codes_only = np.zeros(Vc, dtype=bool)
        self._codes_only[: layout.n_codes] = True
        self._pad_only = np.zeros(Vc, dtype=bool)
        self._pad_only[layout.content_pad] = True

    def _start(self) -> None:
        super()._start()
        self._t = 0  # one index for the whole batch: the official sampler pads streams in lockstep

    def admit(self, row: int, cls: int | None = None, seed: int | None = None) -> None:
        raise InputError("the official sampler runs whole batches", "use the dq-edge sampler for continuous batching")

    def append_prefix(self, prefix: TokenBatch) -> None:
        raise InputError("the official sampler cannot continue a prefix", "use the dq-edge sampler for completion")

    # ------------------------------------------------------------------ one step
    def step(self) -> int:
        if self.is_done():
            return 0
        if self._t is None:
            self._start()
        elif self._logits is None:
            self._logits = self.backend.position_step(*self.rows.column(self._t), self._t)
        t = self._t
        self._check_room(t + 1)
        live = ~self._ended
        everyone = np.ones(self.batch, dtype=bool)
        segment = np.full(self.batch, self._stage, dtype=np.int64)
        position = self._position_sampler(self._logits, self._pos_allowed, self._rng)
        self._record_positions(position, live)
        self.rows.set_position(t + 1, position, segment, everyone)
        c_logits = self.backend.content_step(self.rows.position[:, t + 1], self.rows.segment[:, t + 1], t)
        allowed = np.where(self._ended[:, None], self._pad_only, self._codes_only)  # PAD from the EOS step on
        content = self._content_sampler(c_logits, allowed, self._rng)
        self.rows.set_content(t + 1, content, everyone)
        self._t, self._logits = t + 1, None
        if self._ended.all():
            if self._stage == SEGMENT_COARSE:
                self._start_fine_stream()
            else:
                self._all_done = True
        return int(live.sum())

    def _record_positions(self, position: np.ndarray, live: np.ndarray) -> None:
        """Forbid what was sampled; a sample that sampled its EOS gets PAD only from now on."""
        rows = np.flatnonzero(live)
        self._pos_allowed[rows, position[rows]] = False
        eos = self.layout.position_eos(self._stage)
        ended = rows[position[rows] == eos]
        if len(ended):
            self._ended[ended] = True
            self._pos_allowed[ended] = False
            self._pos_allowed[ended, self.layout.position_pad(self._stage)] = True

    def _start_fine_stream(self) -> None:
        layout, B, r = self.layout, self.batch, self.rows
        Tc = self._t + 1
        self._coarse_len = Tc
        self._check_room(Tc)
        # the fine stream's view of the coarse rows: content stack fed each row's own position
        for j in range(Tc):
            self.backend.position_step(*r.column(j), j)
            self.backend.content_step(r.position[:, j], r.segment[:, j], j)
        r.content[:, Tc], r.position[:, Tc], r.segment[:, Tc] = r.start_content, r.start_fine, SEGMENT_FINE
        # fine positions: cells of regions not coded coarsely, not the quirk's class cell, and the EOS
        coded = np.zeros((B, layout.n_coarse), dtype=bool)
        cells = (r.segment[:B, :Tc] == SEGMENT_COARSE) & (r.position[:B, :Tc] < layout.n_coarse)
        coded[np.nonzero(cells)[0], r.position[:B, :Tc][cells]] = True
        self._pos_allowed[:] = False
        self._pos_allowed[:, : layout.n_fine] = ~coded[:, self.masks.region_of_cell]
        if layout.n_classes:
            quirk = r.start_coarse[:B]  # Nc + 2 + class, read as a fine cell index
            inside = quirk < layout.n_fine
            self._pos_allowed[np.flatnonzero(inside), quirk[inside]] = False
        self._pos_allowed[:, layout.position_eos(SEGMENT_FINE)] = True
        self._ended[:] = False
        self._stage = SEGMENT_FINE
        self._t = Tc

    def _check_room(self, index: int) -> None:
        if index >= self.rows.content.shape[1]:
            raise InputError(
                f"the official sampler's padded sequence needs more than the model's {self.rows.content.shape[1]} token rows",
                "generate fewer samples at once (it pads the coarse stream to the batch maximum), e.g. one",
            )

    # ------------------------------------------------------------------ finish
    def is_done(self) -> bool:
        return self._cancelled or self._all_done

    @property
    def finished(self) -> np.ndarray:
        return np.full(self.batch, self._all_done)

    def sequences(self) -> TokenBatch:
        """Every sample in dq-edge's layout, without the padding between the streams:
        [start, coarse..., EOS, start, fine..., EOS] (EOS tokens carry the content EOS; the fine
        stream may cover fewer cells than its regions own)."""
        known = 1 if self._t is None else self._t + 1
        layout, r = self.layout, self.rows
        seqs = []
        for i in range(self.batch):
            content, position, segment = r.content[i, :known], r.position[i, :known], r.segment[i, :known]
            pad = np.where(segment == SEGMENT_COARSE, layout.n_coarse, layout.n_fine)
            keep = position != pad
            eos = position == pad + 1
            content = np.where(eos, layout.content_eos, content)
            seqs.append((content[keep], position[keep], segment[keep]))
        return pad_sequences(layout, seqs)
