"""The CLI starts light: `import scitq.cli` loads no database driver or ORM, `scitq
--help` imports no command group, and a typo gets its close match."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from scitq.cli import SHORT_HELP, SUBCOMMANDS, scitq
from tests.cli.conftest import PROJECT_ROOT


def _loaded_after(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return set(done.stdout.split())


def test_import_scitq_cli_loads_no_driver_orm_or_rich() -> None:
    loaded = _loaded_after("import scitq.cli")
    assert not {"sqlalchemy", "alembic", "psycopg", "rich", "scitq.db.connection"} & loaded


def test_launch_loads_no_orm() -> None:
    loaded = _loaded_after("import scitq.cli.launch")
    assert "sqlalchemy" not in loaded and "alembic" not in loaded
    assert "rich" not in loaded  # launch prints no table


def test_help_lists_every_group_without_importing_them() -> None:
    run_help = "from scitq.cli import scitq\ntry: scitq.main(['--help'])\nexcept SystemExit: pass"
    loaded = _loaded_after(run_help)
    assert not {module for _, (module, _) in SUBCOMMANDS.items()} & loaded
    ctx = click.Context(scitq)
    for name in SUBCOMMANDS:
        command = scitq.get_command(ctx, name)
        assert command is not None
        assert SHORT_HELP[name] == command.get_short_help_str(1000), name


@pytest.mark.parametrize(
    ("typo", "hint"), [("lunch", "Did you mean 'launch'?"), ("tsak", "Did you mean 'task'?")]
)
def test_a_mistyped_command_gets_its_close_match(typo: str, hint: str) -> None:
    result = CliRunner().invoke(scitq, [typo])
    assert result.exit_code == 2
    assert f"Error: No such command '{typo}'. {hint}" in result.stderr


def test_an_unknown_command_without_a_close_match() -> None:
    result = CliRunner().invoke(scitq, ["xyzzy"])
    assert result.exit_code == 2
    assert "Error: No such command 'xyzzy'." in result.stderr
    assert "Did you mean" not in result.stderr


def test_launch_reads_only_the_database_settings() -> None:
    loaded = _loaded_after(
        "import scitq.cli.launch\nfrom scitq.config import load_settings\n"
        "settings = load_settings(lazy=True)\nsettings.database"
    )
    # [transfer] may load: a URI's scheme may name an rclone remote of its configuration
    sections = {"scitq.config.scheduler", "scitq.config.web"}
    assert not (sections | {"psutil", "difflib"}) & loaded
    assert "scitq.config.database" in loaded
