"""Readers of the files that build and run the containers: docker/Dockerfile, docker-compose.yml, ``run``.

Docker cannot run here, so the files are parsed: the Dockerfile into stages (with what each
inherits from the stage it builds on), the compose file with PyYAML, with Compose's
``${NAME:-default}`` interpolation done for an empty environment.
"""
from __future__ import annotations

import json
import re
import shlex
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from service.settings import Settings
from tests.conftest import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
BIN = Path(sys.executable).parent


# --- the Dockerfile ---------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str  # what FROM names, global ARGs substituted
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)

    def arguments(self, keyword: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == keyword]


def _logical_lines(text: str) -> list[str]:
    """The instructions, one per line: comments and blank lines dropped, continuations joined."""
    lines, pending = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return lines


class Dockerfile:
    """A multi-stage Dockerfile: its stages by name, and what a stage sees through the ones below it."""

    def __init__(self, path: Path) -> None:
        self.global_args: dict[str, str] = {}
        self.stages: dict[str, Stage] = {}
        stage = None
        for line in _logical_lines(path.read_text()):
            keyword, _, arguments = line.partition(" ")
            keyword, arguments = keyword.upper(), arguments.strip()
            if keyword == "FROM":
                base, _, name = string.Template(arguments).substitute(self.global_args).partition(" AS ")
                stage = Stage(name.strip() or f"stage-{len(self.stages)}", base.strip())
                self.stages[stage.name] = stage
            elif stage is None:
                assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
                arg_name, _, default = arguments.partition("=")
                self.global_args[arg_name] = default
            else:
                stage.instructions.append((keyword, arguments))

    def chain(self, name: str) -> list[Stage]:
        """The stage ``name`` and those it is built on, the base image's first."""
        stages = [self.stages[name]]
        while stages[0].base in self.stages:
            stages.insert(0, self.stages[stages[0].base])
        return stages

    def arguments(self, name: str, keyword: str) -> list[str]:
        """Every ``keyword`` instruction that stage ``name`` inherits or has, in order."""
        return [arguments for stage in self.chain(name) for arguments in stage.arguments(keyword)]

    def last(self, name: str, keyword: str) -> str | None:
        found = self.arguments(name, keyword)
        return found[-1] if found else None

    def env(self, name: str) -> dict[str, str]:
        """The ENV values the stage ``name`` runs with (PATH aside: it names the image's venv)."""
        env = {}
        for arguments in self.arguments(name, "ENV"):
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                env[key] = value
        env.pop("PATH", None)
        return env

    def arg_default(self, name: str, arg: str) -> str:
        defaults = dict(item.partition("=")[::2] for item in self.stages[name].arguments("ARG"))
        return defaults[arg]

    def exec_form(self, name: str, keyword: str) -> list[str]:
        """The stage's CMD, or its HEALTHCHECK's command, as an exec-form list."""
        arguments = self.last(name, keyword)
        assert arguments is not None, f"stage {name} has no {keyword}"
        if keyword == "HEALTHCHECK":
            arguments = arguments.partition(" CMD ")[2]
        command = json.loads(arguments)
        assert isinstance(command, list), f"{keyword} of {name} should be in exec form"
        return command

    def copied_to(self, name: str, destination: str) -> Path:
        """The source file in the repository that a COPY of stage ``name`` (or below) puts at ``destination``."""
        for arguments in self.arguments(name, "COPY"):
            *sources, target = shlex.split(arguments)
            if target == destination and not any(source.startswith("--from") for source in sources):
                return REPO / sources[0]
        raise AssertionError(f"nothing is copied to {destination} in stage {name}")

    def local_command(self, name: str, command: list[str]) -> list[str]:
        """An image's command run here: its programs from this venv, its copied files from the repository."""
        local = []
        for word in command:
            if word == "python":
                word = sys.executable
            elif (BIN / word).exists() and not local:
                word = str(BIN / word)
            elif word.startswith("/"):
                word = str(self.copied_to(name, word))
            local.append(word)
        return local


# --- the compose file -------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value):
    """Compose's ``${NAME:-default}`` and ``${NAME}`` for an empty environment, all through ``value``."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda match: match.group(2) or "", value)
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    return value


def compose_defaults() -> dict[str, str]:
    """Every variable the compose file interpolates, with its default there."""
    return {name: default or "" for name, default in _VARIABLE.findall(COMPOSE.read_text())}


def read_compose() -> dict:
    """docker-compose.yml as Compose reads it with no variables set (anchors and merge keys resolved)."""
    return interpolate(yaml.safe_load(COMPOSE.read_text()))


# --- the rest ---------------------------------------------------------------------------


def read_torch_pin() -> str:
    """The exact torch requirement ``./run`` installs first."""
    match = re.search(r"torch_pin=\$\{GDC_TORCH:-([^}]+)\}", (REPO / "run").read_text())
    assert match, "./run no longer names its torch pin as torch_pin=${GDC_TORCH:-...}"
    return match.group(1)


def settings_variables() -> dict[str, str]:
    """Every GDC_* setting with its default as an environment value ('' for none)."""
    variables = {}
    for name, spec in Settings.model_fields.items():
        default = spec.default
        if isinstance(default, list):
            default = ",".join(str(item) for item in default)
        variables[f"GDC_{name.upper()}"] = "" if default is None else str(default)
    return variables
