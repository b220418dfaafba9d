"""Every patch of a library's internals, in one place.

maximalcai changes the behaviour of a library's private code in nine spots, each for a speed-up, a missing data
file or a hang measured in docs/KNOWN_BUGS_AND_FIXES.md. They live in seven modules here, and each module names the
library versions it was written for in ``WRITTEN_FOR``: importing it outside them raises ``PatchVersionError``
(a library that renamed a private helper would otherwise make the patch a silent no-op, or wrong), and
tests/test_patches.py fails when a patch stops taking effect with the pinned versions.

| module | library internal | what it buys |
|---|---|---|
| ``gguf_reader`` | ``gguf.GGUFReader`` (transformers looks it up at call time), its ``_get`` | one fast GGUF parse |
| ``gqa_attention`` | transformers' attention and mask registries | CPU decoding without ``repeat_kv`` copies |
| ``kv_cache`` | transformers' ``DynamicLayer`` / ``DynamicCache`` | no per-step cache copy; continuous batching |
| ``onednn_linear`` | ``torch.ops.mkldnn`` linears; a hook on the LM head | faster frozen CPU linears; no copies |
| ``trl_scoring`` | TRL's ``_use_triton``, ``chunked_logprob._addmm_fp32`` | CPU DPO: completions only, head cast once|
| ``ifeval_punkt`` | ``if_verifiable``'s nltk tokenizers | IFEval checks without nltk's punkt data |
| ``hub_timeouts`` | huggingface_hub's client factory | no hub request waits for ever |

Modules are imported on first use (``patches.kv_cache``), so importing this package loads no library.
"""

from __future__ import annotations

from importlib import import_module, metadata

from maximalcai.errors import MaximalcaiError

WRITTEN_FOR: dict[str, dict[str, str]] = {
    "gguf_reader": {"transformers": ">=4.46,<6", "gguf": ">=0.10,<1"},
    "gqa_attention": {"transformers": ">=4.54,<6"},
    "kv_cache": {"transformers": ">=4.56,<6"},
    "onednn_linear": {"torch": ">=2.3,<3"},
    "trl_scoring": {"trl": ">=1.15,<1.17"},
    "ifeval_punkt": {"if-verifiable": ">=0.1.2,<0.2", "nltk": ">=3.8,<4"},
    "hub_timeouts": {"huggingface_hub": ">=1.0,<3"},
}


class PatchVersionError(MaximalcaiError):
    """A library version outside the range a patch of its internals was written and tested for."""


def require(module: str) -> None:
    """Raise PatchVersionError unless every library ``module`` (a patch's name or module path) patches is
    installed at a version it was written for."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    name = module.rsplit(".", 1)[-1]
    for library, spec in WRITTEN_FOR[name].items():
        try:
            found = metadata.version(library)
        except metadata.PackageNotFoundError:
            continue  # the patch's own import of the library names what is missing
        if Version(found).public not in SpecifierSet(spec):
            raise PatchVersionError(
                f"maximalcai.patches.{name} patches {library} internals and was written for {library}{spec}, "
                f"but {library} {found} is installed; install a version in that range (constraints/cpu.txt pins "
                f"one), or check the patch against it and widen the range: python -m pytest tests/test_patches.py"
            )


def __getattr__(name: str):
    if name in WRITTEN_FOR:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
