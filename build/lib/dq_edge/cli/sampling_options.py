"""Sampling flags of the generation commands (`run`, `sample`, `eval gen`), declared once as
Annotated types so every command spells and documents them the same way, and mapped onto the
library's one options object (`dq_edge.generation.SamplingParams`) in one place."""

from __future__ import annotations

from typing import Optional

import typer
from typing_extensions import Annotated

from dq_edge.errors import DQEdgeError, UsageError

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
Sampler = Annotated[
    str,
    typer.Option(
        "--sampler",
        help="dq-edge (correct masks, default) | official (the official sample_from_scratch, token for token, quirks included).",
    ),
]

# library option name -> flag, for turning a library message into one that names the flag
FLAG_OF = {
    "temperature": "--temperature", "top-k": "--top-k", "top-p": "--top-p", "top-k-pos": "--top-k-pos",
    "top-p-pos": "--top-p-pos", "cfg-scale": "--cfg-scale", "seed": "--seed", "sampler": "--sampler",
}


def sampling_params(
    seed: int = 0, temperature: float = 1.0, top_k=None, top_p=None, top_k_pos=None, top_p_pos=None,
    cfg_scale=None, greedy: bool = False, fixed_fine_positions: bool = False, sampler: str = "dq-edge",
):
    """The flags as a validated SamplingParams; a bad value is a usage error naming its flag."""
    from dq_edge.generation import SamplingParams

    params = SamplingParams(
        seed=seed, temperature=temperature, top_k=top_k, top_p=top_p, top_k_pos=top_k_pos, top_p_pos=top_p_pos,
        cfg_scale=cfg_scale, greedy=greedy, fixed_fine_positions=fixed_fine_positions, sampler=sampler,
    )
    try:
        params.validate()
    except DQEdgeError as exc:
        option = exc.message.split(" ", 1)[0]
        flag = FLAG_OF.get(option)
        raise UsageError(f"{flag} {exc.message.split(' ', 1)[1]}" if flag else exc.message, exc.hint) from exc
    return params
