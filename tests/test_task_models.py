"""`genzoo list` shows the task models (T5, ViT, CLIP) in a second table, and the catalog names only
commands and scripts that exist."""

from pathlib import Path

import typer
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.registry import families
from genzoo.task_models import task_models

ROOT = Path(__file__).resolve().parents[1]


def test_list_has_a_task_model_table_naming_t5_vit_and_clip():
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    families_part, sep, tasks_part = result.output.partition("task models")
    assert sep, "no task-model table in `genzoo list`"
    for name in ("t5", "vit", "clip"):
        assert any(line.split("│")[1].strip() == name for line in tasks_part.splitlines() if line.count("│") > 2), name
    assert "genzoo t5 finetune" in tasks_part and "genzoo clip train" in tasks_part
    assert "bert" in families_part  # a registered family stays in the first table


def test_catalog_names_real_commands_and_scripts_and_no_registered_family():
    root = typer.main.get_command(app)
    for model in task_models():
        assert model.name not in families(), f"{model.name} is a registered family; list it there, not here"
        for command in model.commands:
            if command.startswith("genzoo "):
                group = root
                for word in command.split()[1:]:  # typer may vendor its own click: look for groups by duck type
                    assert word in getattr(group, "commands", {}), f"{command!r} is not a command"
                    group = group.commands[word]
            else:
                assert (ROOT / command).is_file(), f"{command} does not exist"
