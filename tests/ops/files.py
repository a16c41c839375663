"""Small readers for the deployment files: systemd units, environment files, Dockerfiles, and
the secrets an mmserver TOML names.

Hand-written on purpose: configparser refuses the repeated keys a unit file allows, and no
Dockerfile parser is worth a dependency for the few properties the tests check.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[2]

_TIMESPAN_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
}


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file, each a list of (key, value) in file order; repeats are kept."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in _join_continuations(text.splitlines()):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        if current is None or "=" not in line:
            raise ValueError(f"unexpected line in unit file: {raw!r}")
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def _join_continuations(lines: list[str]) -> list[str]:
    joined: list[str] = []
    pending = ""
    for line in lines:
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    if pending:
        joined.append(pending)
    return joined


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [value for name, value in section if name == key]


def single(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"{key}= is set {len(found)} times, expected once"
    return found[0]


def timespan_seconds(raw: str) -> float:
    """A systemd time span ("40s", "1min 30s", "500ms", or bare seconds) in seconds."""
    raw = raw.strip()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return float(raw)
    total = 0.0
    position = 0
    for match in re.finditer(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)", raw):
        if match.start() != position:
            break
        unit = match.group(2)
        if unit not in _TIMESPAN_UNITS:
            raise ValueError(f"unknown time unit {unit!r} in {raw!r}")
        total += float(match.group(1)) * _TIMESPAN_UNITS[unit]
        position = match.end()
    if position != len(raw) or position == 0:
        raise ValueError(f"not a time span: {raw!r}")
    return total


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=value lines of an EnvironmentFile= (no quoting is used in ours)."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"not KEY=value: {raw!r}")
        env[key.strip()] = value.strip()
    return env


def commented_env_names(text: str) -> set[str]:
    """Variable names of commented-out example lines such as `#MMSERVER_REDIS_URL=...`."""
    return set(re.findall(r"^#\s*(MMSERVER_[A-Z0-9_]+)=", text, flags=re.MULTILINE))


@dataclass
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str] | None:
        """The JSON-array form of a CMD/ENTRYPOINT/RUN, None for the shell form."""
        try:
            value = json.loads(self.arguments)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the build stages, with ${ARG} in FROM lines resolved."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _join_continuations(text.splitlines()):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = " ".join(rest.split())
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, rest))
        else:
            raise ValueError(f"instruction before FROM: {line!r}")
    return args, stages


# A key that holds a secret by its name: token, backend_keys, *_secret, password, ... The
# secret's *_file twin (token_file, player_jwt_secret_file) names a file instead and is fine.
_SECRET_KEY = re.compile(r"(token|secret|password|(^|_)keys?$)")


def toml_items(document: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted.key, value) of a parsed TOML document, tables flattened."""
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from toml_items(value, name + ".")
        else:
            yield name, value


def secret_files(document: dict[str, Any]) -> dict[str, str]:
    """{dotted key: path} of every *_file setting: the files a configuration reads secrets from."""
    return {key: value for key, value in toml_items(document) if key.endswith("_file")}


def inline_secrets(document: dict[str, Any]) -> list[str]:
    """Dotted keys that hold a secret value in the file itself."""
    return [key for key, _value in toml_items(document)
            if not key.endswith("_file") and _SECRET_KEY.search(key.rpartition(".")[2])]
