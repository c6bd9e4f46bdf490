"""Sampling flags of the generation commands (`run`, `sample`, `eval gen`), declared once as
Annotated types so every command spells and documents them the same way, and mapped onto the
library's one options object (`dq_edge.generation.SamplingParams`) in one place."""

from __future__ import annotations

import functools
import inspect
from typing import Optional

import typer
from typing_extensions import Annotated

from dq_edge.errors import DQEdgeError, UsageError

Seed = Annotated[int, typer.Option("--seed", help="Seed; image i draws from its own random stream seeded with seed + i.")]
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


# (parameter name, flag type, default): the sampling flags every generation command takes
SAMPLING_FLAGS = (
    ("seed", Seed, 0),
    ("temperature", Temperature, 1.0),
    ("top_k", TopK, None),
    ("top_p", TopP, None),
    ("top_k_pos", TopKPos, None),
    ("top_p_pos", TopPPos, None),
    ("cfg_scale", CfgScale, None),
    ("greedy", Greedy, False),
    ("fixed_fine_positions", FixedFinePositions, False),
    ("sampler", Sampler, "dq-edge"),
)


def with_sampling_flags(command):
    """Give a typer command the sampling flags, declared here once, and hand them to it as one
    validated `sampling: SamplingParams` keyword (a bad value is a usage error naming its flag).

    typer reads a command's parameters from its signature: the wrapper's signature is the
    command's own (without `sampling`) plus one keyword parameter per flag."""
    own = inspect.signature(command, eval_str=True)
    kept = [p for p in own.parameters.values() if p.name != "sampling"]
    flags = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=flag)
             for name, flag, default in SAMPLING_FLAGS]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        values = {name: kwargs.pop(name, default) for name, _, default in SAMPLING_FLAGS}
        return command(*args, sampling=sampling_params(**values), **kwargs)

    wrapper.__signature__ = own.replace(parameters=kept + flags)
    wrapper.__annotations__ = {p.name: p.annotation for p in kept + flags}
    del wrapper.__wrapped__  # typer must see the wrapper's signature, not the command's
    return wrapper
