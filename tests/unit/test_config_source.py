"""The one reader of settings (`scitq.config.source`): conversions, precedence, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scitq.config.source import NOT_A_KEY, ConfigSource, convert, key
from scitq.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    flag: bool = False
    count: int = 1
    ratio: float | None = None
    name: str = "x"
    folder: Path = Path("/default")
    words: tuple[str, ...] = ()
    port: int = field(default=80, metadata=key(minimum=1, maximum=65535))
    level: int = field(default=1, metadata=key(minimum=1))
    signed: float = field(default=0.0, metadata=key(minimum=None))
    url: str | None = field(default=None, metadata=key(env="OTHER_URL", fallback_env="BACKUP"))
    kept: str | None = field(default=None, metadata=key(empty_is_value=True))
    even: int = field(default=0, metadata=key(check=lambda n: None if n % 2 == 0 else "odd"))
    code_only: dict[str, str] = field(default_factory=dict, metadata=NOT_A_KEY)


WORDS = "1/true/yes/on/0/false/no/off"


def read(environ: dict[str, str], table: dict[str, Any] | None = None) -> dict[str, Any]:
    source = ConfigSource(environ, {"sample": table or {}}, "test.toml")
    return source.read(Sample, "sample", env_prefix="SCITQ_SAMPLE_")


def error(environ: dict[str, str], table: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        read(environ, table)
    return str(info.value)


@pytest.mark.parametrize(
    ("variable", "text", "value"),
    [
        ("FLAG", "yes", True), ("FLAG", "On", True), ("FLAG", "1", True),
        ("FLAG", "false", False), ("FLAG", "0", False), ("FLAG", "NO", False),
        ("COUNT", "42", 42), ("COUNT", " 7 ", 7),
        ("RATIO", "2.5", 2.5), ("RATIO", "1e3", 1000.0), ("RATIO", "3", 3.0),
        ("NAME", "hello world", "hello world"),
        ("FOLDER", "/srv/data", Path("/srv/data")),
        ("WORDS", "--poll-max 5", ("--poll-max", "5")),
        ("SIGNED", "-1.5", -1.5),
    ],
)  # fmt: skip
def test_environment_text_is_converted(variable: str, text: str, value: object) -> None:
    got = read({f"SCITQ_SAMPLE_{variable}": text})[variable.lower()]
    assert got == value
    assert type(got) is type(value)


def test_paths_expand_the_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert read({"SCITQ_SAMPLE_FOLDER": "~/data"})["folder"] == tmp_path / "data"
    assert read({}, {"folder": "~/other"})["folder"] == tmp_path / "other"


@pytest.mark.parametrize(
    ("variable", "text", "problem"),
    [
        ("COUNT", "many", "must be a number (an integer)"),
        ("COUNT", "1.5", "must be a number (an integer)"),
        ("RATIO", "fast", "must be a number"),
        ("RATIO", "nan", "must be a number"),
        ("RATIO", "inf", "must be a number"),
        ("FLAG", "maybe", "must be true or false (1/true/yes/on/0/false/no/off)"),
        ("COUNT", "-3", "must not be negative"),
        ("PORT", "0", "must be between 1 and 65535"),
        ("PORT", "65536", "must be between 1 and 65535"),
        ("LEVEL", "0", "must be at least 1"),
        ("EVEN", "3", "odd"),
    ],
)
def test_a_bad_variable_is_named_with_what_it_must_be(
    variable: str, text: str, problem: str
) -> None:
    name = f"SCITQ_SAMPLE_{variable}"
    assert error({name: text}) == f"{name}: [sample] {variable.lower()} {problem}, not {text!r}"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"count": "many"}, "count must be a number (an integer), not 'many'"),
        ({"count": 2.5}, "count must be a number (an integer), not 2.5"),
        ({"count": True}, "count must be a number (an integer), not True"),
        ({"ratio": False}, "ratio must be a number, not False"),
        ({"flag": "sometimes"}, f"flag must be true or false ({WORDS}), not 'sometimes'"),
        ({"flag": 1}, f"flag must be true or false ({WORDS}), not 1"),
        ({"name": 5}, "name must be a string, not 5"),
        ({"folder": ["/a"]}, "folder must be a string, not ['/a']"),
        ({"words": ["a", 1]}, "words must be a list of strings, not ['a', 1]"),
        ({"ratio": -0.5}, "ratio must not be negative, not -0.5"),
    ],
)
def test_a_bad_file_value_names_the_file(table: dict[str, Any], message: str) -> None:
    assert error({}, table) == f"test.toml: [sample] {message}"


def test_file_values_keep_their_toml_types() -> None:
    values = read({}, {"flag": True, "count": 3, "ratio": 2, "words": ["a", "b"], "name": "n"})
    assert values == {"flag": True, "count": 3, "ratio": 2.0, "words": ("a", "b"), "name": "n"}
    assert type(values["ratio"]) is float
    assert read({}, {"count": "4"})["count"] == 4  # a quoted number is read like a variable


def test_only_given_keys_are_returned() -> None:
    assert read({}) == {}


def test_the_variable_beats_the_file_and_an_empty_one_is_unset() -> None:
    assert read({"SCITQ_SAMPLE_COUNT": "9"}, {"count": 2}) == {"count": 9}
    assert read({"SCITQ_SAMPLE_COUNT": ""}, {"count": 2}) == {"count": 2}


def test_a_named_variable_and_its_fallback() -> None:
    assert read({"SCITQ_SAMPLE_URL": "ignored"}) == {}  # the key names its own variable
    assert read({"OTHER_URL": "a://env"}, {"url": "a://file"}) == {"url": "a://env"}
    assert read({"BACKUP": "a://backup"}, {"url": "a://file"}) == {"url": "a://file"}
    assert read({"BACKUP": "a://backup"}) == {"url": "a://backup"}


def test_an_empty_string_in_the_file_is_unset_unless_it_is_a_value() -> None:
    assert read({}, {"name": "", "kept": ""}) == {"kept": ""}


def test_a_section_without_variables_reads_only_the_file() -> None:
    source = ConfigSource({"SCITQ_SAMPLE_COUNT": "9"}, {"sample": {"name": "n"}}, "test.toml")
    assert source.read(Sample, "sample", env_prefix=None) == {"name": "n"}


def test_a_field_that_is_not_a_key_is_unknown_in_the_file() -> None:
    message = error({}, {"code_only": {}})
    assert message.startswith("test.toml: [sample] unknown key 'code_only' (known: count, even,")


def test_a_key_of_an_unsupported_type_is_a_programming_error() -> None:
    @dataclass
    class Broken:
        mapping: dict[str, str] = field(default_factory=dict)

    with pytest.raises(TypeError, match="NOT_A_KEY"):
        ConfigSource({}, {}).read(Broken, "broken", env_prefix=None)


def test_convert_refuses_what_it_cannot_read() -> None:
    assert convert(Path, "/x") == Path("/x")
    with pytest.raises(Exception, match="must be a string"):
        convert(str, 3)


def test_nested_tables_are_found_and_checked() -> None:
    source = ConfigSource({}, {"a": {"b": {"sample": {"count": 2}}}, "c": 1}, "f.toml")
    assert source.read(Sample, "a.b.sample", env_prefix=None) == {"count": 2}
    assert source.has_table("a.b") and not source.has_table("a.z")
    assert source.table("missing.too") == {}
    with pytest.raises(ConfigError, match=r"^f\.toml: \[c\] must be a table$"):
        source.table("c.d")
