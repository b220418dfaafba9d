"""Typed config sections: one frozen dataclass per section, built from the config by its own annotations.

The config's schema (schemas/config.schema.yaml) validates a section and fills its defaults; a ``Section``
subclass names where the section sits (``PATH``, under a stage or at the top) and declares its keys as fields,
and ``from_section`` builds it: a field annotated with another dataclass is built from its sub-section, a
tuple-typed field from the list the YAML held. The library reads these classes, so a misspelt setting is an
AttributeError where it is used, and a key that the schema has and the class lacks (or the reverse) fails at
the first build; ``tests/test_config.py`` checks every class against the schema.

``job.job_arguments`` calls ``from_section`` for each rule param whose library parameter is annotated with a
Section: the rule's params stay plain data (Snakemake compares them to decide reruns), the library gets types.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, ClassVar, TypeVar

from maximalcai.config import config_section, stage_section

T = TypeVar("T")
SECTIONS: list[type] = []  # every Section class, in the order their modules were imported (the tests walk it)


class Section:
    """A config section, typed. ``PATH``: its keys from the stage (or, with ``STAGE = False``, the config) down."""

    PATH: ClassVar[tuple[str, ...]]
    STAGE: ClassVar[bool] = True
    # Keys of the section that pick a job's inputs (file paths; the stages a report reads), not settings: a rule
    # passes them as inputs and leaves them out of its params (an absolute path in params would rerun the job
    # whenever the checkout moves), so the class has no field for them.
    INPUTS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        SECTIONS.append(cls)

    @classmethod
    def from_section(cls: type[T], section: dict[str, Any]) -> T:
        """From the config's section at ``PATH`` (keys it lacks take the schema's defaults; ``INPUTS`` left out)."""
        fill = stage_section if cls.STAGE else config_section
        return build(cls, {k: v for k, v in fill(cls.PATH, section).items() if k not in cls.INPUTS})

    @classmethod
    def settings(cls, section: dict[str, Any]) -> dict[str, Any]:
        """A config section as a rule's params hold it: the section less its ``INPUTS``."""
        return {k: v for k, v in section.items() if k not in cls.INPUTS}

    def as_dict(self) -> dict[str, Any]:
        """Plain data, the section as the config held it (fingerprints, model cards, manifests)."""
        return dataclasses.asdict(self, dict_factory=lambda items: {k: _plain(v) for k, v in items})


def build(cls: type[T], values: dict[str, Any]) -> T:
    """An instance of the dataclass ``cls`` from plain data: nested dataclasses and tuples by annotation. A key
    ``cls`` has no field for is an error naming both; a field ``values`` lacks keeps the class's default."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field for {', '.join(unknown)} (its fields: {', '.join(fields)})")
    hints = _hints(cls)
    return cls(**{name: convert(hints[name], value) for name, value in values.items()})


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def convert(hint: Any, value: Any) -> Any:
    """``value`` (plain YAML data) as the annotation ``hint`` wants it."""
    if value is None:
        return None
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return build(hint, value)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return build(option, value)
            if typing.get_origin(option) is tuple and isinstance(value, list):
                return tuple(value)
        return value
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def _plain(value: Any) -> Any:
    """A tuple as the list the config held."""
    return list(value) if isinstance(value, tuple) else value
