"""Sampling flags shared by the generation commands (`sample`, and `run` when it adopts them),
declared once as Annotated types so every command spells and documents them the same way."""

from __future__ import annotations

from typing import Optional

import typer
from typing_extensions import Annotated

Seed = Annotated[int, typer.Option("--seed", help="Seed; chunk i of --batch images uses seed + i.")]
Temperature = Annotated[float, typer.Option("--temperature", help="Softmax temperature (content and positions).")]
TopK = Annotated[Optional[int], typer.Option("--top-k", help="Top-k for content tokens.")]
TopP = Annotated[Optional[float], typer.Option("--top-p", help="Top-p (nucleus) for content tokens, in (0, 1].")]
TopKPos = Annotated[Optional[int], typer.Option("--top-k-pos", help="Top-k for positions.")]
TopPPos = Annotated[Optional[float], typer.Option("--top-p-pos", help="Top-p (nucleus) for positions, in (0, 1].")]
CfgScale = Annotated[
    Optional[float], typer.Option("--cfg-scale", help="Classifier-free guidance scale (class models with a null class).")
]
Greedy = Annotated[bool, typer.Option("--greedy", help="Argmax instead of sampling.")]
FixedFinePositions = Annotated[
    bool, typer.Option("--fixed-fine-positions", help="Fine stream: sample content only, at every fine cell in raster order.")
]
