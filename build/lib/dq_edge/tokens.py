"""Token conventions (docs/design.md §2). Torch-free: the runtime uses this too.

With K codes, Nc coarse regions, Nf fine cells and C classes:

| stream          | ids      | PAD | EOS  | SOS (uncond) | class token c |
| content         | 0..K-1   | K   | K+1  | K+2          | K+2+c         |
| coarse position | 0..Nc-1  | Nc  | Nc+1 | Nc+2         | Nc+2+c        |
| fine position   | 0..Nf-1  | Nf  | Nf+1 | Nf+2         | Nf+2+c        |

A class-conditional model trained with class dropout has one extra "null class" c = C used
for classifier-free guidance.
Sequence per sample: [start, coarse..., EOS, start, fine..., EOS], then right padding.
Segment ids: 0 for the coarse stream (incl. its start and EOS), 1 for the fine stream.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SEGMENT_COARSE = 0
SEGMENT_FINE = 1


@dataclass(frozen=True)
class TokenLayout:
    n_codes: int
    coarse_hw: tuple[int, int]
    fine_hw: tuple[int, int]
    n_classes: int = 0  # 0 = unconditional
    null_class: bool = False  # one extra class token for classifier-free guidance

    @property
    def n_coarse(self) -> int:
        return self.coarse_hw[0] * self.coarse_hw[1]

    @property
    def n_fine(self) -> int:
        return self.fine_hw[0] * self.fine_hw[1]

    @property
    def n_start_tokens(self) -> int:
        """Number of distinct start tokens: SOS, or one per class (+ null class)."""
        return 1 if self.n_classes == 0 else self.n_classes + int(self.null_class)

    # content stream
    @property
    def content_pad(self) -> int:
        return self.n_codes

    @property
    def content_eos(self) -> int:
        return self.n_codes + 1

    def content_start(self, cls: int | None = None) -> int:
        return self.n_codes + 2 + (0 if cls is None else cls)

    @property
    def content_vocab(self) -> int:
        return self.n_codes + 2 + self.n_start_tokens

    # position streams
    def grid_size(self, segment: int) -> int:
        return self.n_coarse if segment == SEGMENT_COARSE else self.n_fine

    def position_pad(self, segment: int) -> int:
        return self.grid_size(segment)

    def position_eos(self, segment: int) -> int:
        return self.grid_size(segment) + 1

    def position_start(self, segment: int, cls: int | None = None) -> int:
        return self.grid_size(segment) + 2 + (0 if cls is None else cls)

    def position_vocab(self, segment: int) -> int:
        return self.grid_size(segment) + 2 + self.n_start_tokens

    @property
    def null_class_id(self) -> int | None:
        return self.n_classes if (self.n_classes and self.null_class) else None

    @property
    def max_length(self) -> int:
        """Longest sequence: every region fine -> [start, EOS, start, Nf cells, EOS]."""
        return self.n_fine + 4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenLayout":
        return cls(
            n_codes=int(d["n_codes"]),
            coarse_hw=tuple(d["coarse_hw"]),
            fine_hw=tuple(d["fine_hw"]),
            n_classes=int(d.get("n_classes", 0)),
            null_class=bool(d.get("null_class", False)),
        )
