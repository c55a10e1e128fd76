"""The one reader of settings: a TOML table and ``SCITQ_*`` variables into dataclass fields.

Every section of the configuration file is a frozen dataclass. Each of its fields is a
key of the section's table and an environment variable (``<prefix><KEY>`` unless the
field's `key` metadata names another one, or none), converted to the field's type and
validated here, so that every section spells its errors the same way:

* an unknown key or section is refused, naming the file, the section, the key and the
  known keys (and a close match, if there is one);
* a bad value names where it came from (the variable, or the file) and what it must be.

Precedence, highest first: the variable (an empty one counts as unset), the file, the
field's fallback variable if it has one, the field's default.
"""

from __future__ import annotations

import contextlib
import math
import types
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from scitq.errors import ConfigError

#: The metadata entry of a dataclass field that holds its `KeySpec`.
METADATA = "scitq.config"
#: Words an environment variable (or a TOML string) may use for a boolean.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class KeySpec:
    """How one dataclass field is read (the defaults suit most fields).

    Attributes:
        is_key: False for a field that is not a setting of the file or the environment
            (a sub-section, or a value only code sets).
        env: the variable that overrides the key; "" means ``<prefix><KEY>``, None none.
        fallback_env: a variable read when neither ``env`` nor the file gives a value.
        minimum, maximum: bounds of a number (by default it must not be negative).
        empty_is_value: an empty string in the file is a value (by default it means unset).
        check: returns what is wrong with a converted value (None when it is fine).
    """

    is_key: bool = True
    env: str | None = ""
    fallback_env: str | None = None
    minimum: float | None = 0
    maximum: float | None = None
    empty_is_value: bool = False
    check: Callable[[Any], str | None] | None = None


def key(
    *,
    env: str | None = "",
    fallback_env: str | None = None,
    minimum: float | None = 0,
    maximum: float | None = None,
    empty_is_value: bool = False,
    check: Callable[[Any], str | None] | None = None,
) -> dict[str, KeySpec]:
    """Field metadata for a key read differently from the default (see `KeySpec`)."""
    spec = KeySpec(
        env=env,
        fallback_env=fallback_env,
        minimum=minimum,
        maximum=maximum,
        empty_is_value=empty_is_value,
        check=check,
    )
    return {METADATA: spec}


#: Field metadata for a field that is not a key (``field(metadata=NOT_A_KEY)``).
NOT_A_KEY: dict[str, KeySpec] = {METADATA: KeySpec(is_key=False)}


@dataclass(frozen=True, slots=True)
class _Key:
    name: str
    kind: type
    spec: KeySpec


class _Invalid(Exception):
    """A value that cannot be converted; the argument says what it must be."""


def _kind(annotation: Any) -> type:
    """The type a key is converted to: ``float | None`` is float, ``tuple[str, ...]`` tuple."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(kinds) == 1:
            return _kind(kinds[0])
    elif typing.get_origin(annotation) is tuple and typing.get_args(annotation) == (str, ...):
        return tuple
    elif annotation in (bool, int, float, str, Path):
        return typing.cast(type, annotation)
    raise TypeError(f"a setting cannot be of type {annotation!r}: mark it NOT_A_KEY")


@cache
def section_keys(cls: type) -> tuple[_Key, ...]:
    """The keys of the settings dataclass ``cls``, in field order."""
    hints = typing.get_type_hints(cls)
    found = []
    for item in fields(cls):
        spec = item.metadata.get(METADATA, KeySpec())
        if spec.is_key:
            found.append(_Key(item.name, _kind(hints[item.name]), spec))
    return tuple(found)


def convert(kind: type, raw: object) -> Any:
    """``raw`` (a TOML value, or the text of a variable) as ``kind``.

    Raises:
        _Invalid: with what the value must be.
    """
    text = raw.strip().lower() if isinstance(raw, str) else None
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if text in TRUE_WORDS or text in FALSE_WORDS:
            return text in TRUE_WORDS
        raise _Invalid(f"must be true or false ({'/'.join(TRUE_WORDS + FALSE_WORDS)})")
    if kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        try:
            return int(typing.cast(str, text))
        except (TypeError, ValueError):
            raise _Invalid("must be a number (an integer)") from None
    if kind is float:
        value: float | None = None
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            value = float(raw)
        elif text is not None:
            with contextlib.suppress(ValueError):
                value = float(text)
        if value is None or not math.isfinite(value):
            raise _Invalid("must be a number")
        return value
    if kind is tuple:
        if isinstance(raw, str):
            return tuple(raw.split())
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        raise _Invalid("must be a list of strings")
    if not isinstance(raw, str):
        raise _Invalid("must be a string")
    return Path(raw).expanduser() if kind is Path else raw


def _bounds_problem(spec: KeySpec, value: float) -> str | None:
    low, high = spec.minimum, spec.maximum
    if low is not None and high is not None and not low <= value <= high:
        return f"must be between {low:g} and {high:g}"
    if low == 0 and value < 0:
        return "must not be negative"
    if low is not None and value < low:
        return f"must be at least {low:g}"
    if high is not None and value > high:
        return f"must be at most {high:g}"
    return None


def _unknown(name: str, section: str | None, unknown: list[str], known: Collection[str]) -> str:
    """The one-line error for keys (or, with no section, sections) nobody reads."""
    import difflib  # only on a mistake: CLI start-up

    what = "key" if section is not None else "section"
    where = f"{name}: [{section}] " if section is not None else f"{name}: "
    spelled = [f"[{word}]" if section is None else repr(word) for word in unknown]
    hint = ""
    if len(unknown) == 1 and (close := difflib.get_close_matches(unknown[0], known, n=1)):
        hint = f", did you mean {close[0]}?"
    plural = "s" if len(unknown) > 1 else ""
    return (
        f"{where}unknown {what}{plural} {', '.join(spelled)}{hint} "
        f"(known: {', '.join(sorted(known))})"
    )


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """The environment and the configuration file settings are read from.

    Attributes:
        environ: the environment variables.
        file: the parsed configuration file ({} when there is none).
        name: how errors name the file (its path).
    """

    environ: Mapping[str, str]
    file: Mapping[str, Any]
    name: str = "configuration"

    def table(self, section: str) -> Mapping[str, Any]:
        """The table ``[section]`` (dotted for sub-tables), {} when the file has none."""
        table: Mapping[str, Any] = self.file
        for depth, part in enumerate(section.split(".")):
            value = table.get(part, {})
            if not isinstance(value, dict):
                path = ".".join(section.split(".")[: depth + 1])
                raise ConfigError(f"{self.name}: [{path}] must be a table")
            table = value
        return table

    def has_table(self, section: str) -> bool:
        """Whether the file has ``[section]`` (even empty)."""
        parent, _, last = section.rpartition(".")
        return last in (self.table(parent) if parent else self.file)

    def refuse_unknown_sections(self, known: Collection[str]) -> None:
        """Refuse a top-level name of the file that is not one of the ``known`` sections."""
        unknown = [name for name in self.file if name not in known]
        if unknown:
            raise ConfigError(_unknown(self.name, None, unknown, known))

    def read(
        self,
        cls: type,
        section: str,
        *,
        env_prefix: str | None,
        subsections: Collection[str] = (),
    ) -> dict[str, Any]:
        """The keys of dataclass ``cls`` that ``[section]`` or the environment give.

        Args:
            cls: the settings dataclass; its fields are the keys (`key`, `NOT_A_KEY`).
            section: the table's dotted name.
            env_prefix: ``SCITQ_<SECTION>_``: a key's variable is ``<env_prefix><KEY>``
                unless it names its own; None: only keys that name their own have one.
            subsections: names of the tables nested in this one (not unknown keys).

        Returns:
            The converted values by field name; a key given nowhere is absent (the
            caller's default, or the dataclass's, applies).

        Raises:
            ConfigError: an unknown key in the table, or a value that is not valid.
        """
        table = self.table(section)
        keys = section_keys(cls)
        known = [item.name for item in keys] + list(subsections)
        unknown = [name for name in table if name not in known]
        if unknown:
            raise ConfigError(_unknown(self.name, section, unknown, known))
        values: dict[str, Any] = {}
        for item in keys:
            found = self._raw(item, table, env_prefix)
            if found is None:
                continue
            origin, raw = found
            try:
                value = convert(item.kind, raw)
                problem = None
                if item.kind in (int, float):
                    problem = _bounds_problem(item.spec, value)
                if problem is None and item.spec.check is not None:
                    problem = item.spec.check(value)
            except _Invalid as exc:
                problem = str(exc)
            if problem is not None:
                raise ConfigError(f"{origin}: [{section}] {item.name} {problem}, not {raw!r}")
            values[item.name] = value
        return values

    def _raw(
        self, item: _Key, table: Mapping[str, Any], prefix: str | None
    ) -> tuple[str, Any] | None:
        """(origin, raw value) of a key by precedence, or None when nothing gives it."""
        variable = item.spec.env
        if variable == "":
            variable = None if prefix is None else prefix + item.name.upper()
        if variable and self.environ.get(variable):
            return variable, self.environ[variable]
        raw = table.get(item.name)
        if raw is not None and (raw != "" or item.spec.empty_is_value):
            return self.name, raw
        fallback = item.spec.fallback_env
        if fallback and self.environ.get(fallback):
            return fallback, self.environ[fallback]
        return None
