"""The Compose commands of the README and docs/docker.md, as pasted: one for a host without GPUs never builds or
pulls the CUDA worker's image (gigabytes of torch, and Docker Hub's base image where only the offline build works).

Which services a command reaches follows Compose's rules: the services it names and those they depend on, or, naming
none, every service whose profiles are active. ``--scale worker=0`` starts no CUDA worker, but its image is still
built or pulled.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DOCS = [REPO / "README.md", REPO / "docs" / "docker.md"]
FLAGS_WITH_VALUES = {"-f", "--file", "-p", "--project-name", "--profile", "--scale", "--timeout", "--env-file"}


class ComposeLoader(yaml.SafeLoader):
    """YAML as Compose files write it: an override's ``!reset`` empties the value it tags."""


ComposeLoader.add_constructor("!reset", lambda loader, node: None)


def compose_commands(doc: Path) -> list[list[str]]:
    """The words of every ``docker compose`` command in the bash blocks of ``doc``, from ``docker`` on."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if "docker compose " in line:
                words = shlex.split(line, comments=True)
                commands.append(words[words.index("docker") :])
    return commands


def parse(words: list[str]) -> tuple[list[str], set[str], list[str]]:
    """A ``docker compose`` command's files, active profiles and the services it names."""
    files, profiles, named, subcommand = [], set(), [], None
    arguments = iter(words[2:])
    for word in arguments:
        if word in FLAGS_WITH_VALUES:
            value = next(arguments)
            if word in ("-f", "--file"):
                files.append(value)
            elif word == "--profile":
                profiles.add(value)
        elif word.startswith("-"):
            continue
        elif subcommand is None:
            subcommand = word
        else:
            named.append(word)
    return files or ["docker-compose.yml"], profiles, named


def services(files: list[str]) -> dict[str, dict]:
    """The services of ``files`` merged as Compose merges them, as far as these tests look: profiles, dependencies,
    published ports and network mode."""
    merged: dict[str, dict] = {}
    for name in files:
        for service, spec in yaml.load((REPO / name).read_text(), ComposeLoader)["services"].items():
            spec = spec or {}
            into = merged.setdefault(service, {"profiles": [], "depends_on": set(), "ports": None, "network_mode": None})
            into["profiles"] += spec.get("profiles", [])
            into["depends_on"] |= set(spec.get("depends_on", []))
            into |= {key: spec[key] for key in ("ports", "network_mode") if key in spec}
    return merged


def reached_services(words: list[str]) -> set[str]:
    """The services a ``docker compose ... up|build`` command builds, pulls or starts."""
    files, profiles, named = parse(words)
    stack = services(files)
    if not named:
        return {name for name, spec in stack.items() if not spec["profiles"] or profiles & set(spec["profiles"])}
    reached, todo = set(), list(named)
    while todo:
        service = todo.pop()
        if service not in reached:
            reached.add(service)
            todo += stack[service]["depends_on"]
    return reached


def publishes_the_api(words: list[str]) -> bool:
    """Whether the command starts what the API is reached by: the API on the host's network, or a service that
    publishes a port and is the API or stands in front of it."""
    stack = services(parse(words)[0])
    return any(
        (spec["ports"] or spec["network_mode"] == "host") and (name == "api" or "api" in spec["depends_on"])
        for name, spec in stack.items()
        if name in reached_services(words)
    )


COMMANDS = [(doc.name, words) for doc in DOCS for words in compose_commands(doc)]
UPS = [words for _, words in COMMANDS if "up" in words]


@pytest.mark.parametrize(
    "words", [words for words in UPS if any(word.startswith("cpu-worker=") for word in words)], ids=" ".join
)
def test_a_command_for_a_host_without_gpus_leaves_the_cuda_worker_alone(words):
    assert "worker" not in reached_services(words)


@pytest.mark.parametrize("words", UPS, ids=" ".join)
def test_a_command_that_starts_the_stack_starts_what_answers_on_the_api_port(words):
    files, _, named = parse(words)
    assert set(named) <= set(services(files)), "a service the compose files do not have"
    assert publishes_the_api(words)


def test_the_docs_have_such_commands():
    assert {doc for doc, words in COMMANDS if "cpu-worker" in " ".join(words)} == {"README.md", "docker.md"}
