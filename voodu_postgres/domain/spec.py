"""The ``postgres "scope" "name" { … }`` block as a typed, validated model.

This is the only place untrusted input (an HCL file, or the JSON spec Voodu sends to
``expand``) is interpreted. Everything downstream receives a frozen :class:`PostgresSpec` whose
fields are already checked, so renderers and the planner never re-validate.

Design notes:

* Every problem is reported, not just the first: :func:`load_spec` collects one
  :class:`Problem` per bad field and raises :class:`SpecError` carrying all of them. Each renders
  as one line naming the block (``postgres clowk-lp/db``) and the field.
* Type checks are ours rather than pydantic's coercion: ``replicas = "3"`` is an error, not a 3,
  and a fractional ``1.5`` is rejected, because the Voodu wire format needs real integers.
* Keys the plugin does not own are passed through to the statefulset, but only keys the
  statefulset kind actually understands; an unknown key (a typo such as ``replica``) is an error
  with a suggestion, instead of being silently ignored downstream.

Pure: no I/O. Must not import docker, psycopg or subprocess.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, ValidationInfo, field_validator

from voodu_postgres.domain.errors import VooduError
from voodu_postgres.domain.keys import PRIMARY_ORDINAL_KEY
from voodu_postgres.domain.naming import Ref, label_problem

DEFAULT_IMAGE = "postgres:latest"
DEFAULT_PORT = 5432
MAX_REPLICAS = 32
DEFAULT_USER = "postgres"
DEFAULT_DATABASE = "postgres"
DEFAULT_REPLICATION_USER = "replicator"
DEFAULT_LOCALE = "C.UTF-8"
DEFAULT_ENCODING = "UTF8"
#: seconds the primary may be unreachable before an automatic failover (see bench/failover.py)
DEFAULT_FAILOVER_TIMEOUT = 5.0
MIN_FAILOVER_TIMEOUT, MAX_FAILOVER_TIMEOUT = 1.0, 600.0
#: bytes an async standby may be behind and still be promoted automatically
DEFAULT_MAX_LAG_ON_FAILOVER = 16 * 1024 * 1024

#: Fields the plugin interprets and strips before emitting the statefulset.
PLUGIN_OWNED = (
    "database",
    "user",
    "password",
    "port",
    "initdb_locale",
    "initdb_encoding",
    "pg_config",
    "extensions",
    "replication_user",
    "synchronous",
    "auto_failover",
    "failover_timeout",
    "max_lag_on_failover",
)

#: Statefulset keys passed through unchanged (Voodu's statefulset wire spec, plus build mode).
PASSTHROUGH_KEYS = frozenset(
    {
        "command",
        "env",
        "env_from",
        "volumes",
        "volume_claims",
        "network",
        "networks",
        "network_mode",
        "restart",
        "extra_hosts",
        "cap_add",
        "ulimits",
        "docker_options",
        "resources",
        "logs",
        "inits",
        "probes",
        "on_probe",
        "health_check",
        "build",
        "dockerfile",
        "workdir",
        "path",
        "lang",
        "depends_on",
    }
)

#: Keys the Voodu controller strips before expand sees the block; standalone ignores them too.
IGNORED_KEYS = frozenset({"plugin"})

#: Env vars the plugin must own: a value in spec.env would shadow the bucket (PG_PRIMARY_ORDINAL)
#: or the controller's per-pod identity, silently breaking promote or role detection.
RESERVED_ENV = frozenset({PRIMARY_ORDINAL_KEY, "VOODU_REPLICA_ORDINAL", "VOODU_REPLICA_ID"})

_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# initdb --locale / --encoding are interpolated into POSTGRES_INITDB_ARGS, which the image's
# entrypoint word-splits; only characters that can appear in real locale/encoding names pass.
_LOCALE_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_ENCODING_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CPU_RE = re.compile(r"(\d+(\.\d+)?|\.\d+|\d+m)")
_MEMORY_RE = re.compile(r"\d+(Ki|Mi|Gi|Ti|K|M|G|T)?")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_UNPRINTABLE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

Scalar = bool | int | float | str
# joins several problems found inside one field so load_spec can report them separately
_JOIN = "\x1f"


@dataclass(frozen=True)
class Problem:
    """One validation failure: which block, which field, what is wrong."""

    block: str
    field: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        field = f"{self.field}: " if self.field else ""
        return f"{where}postgres {self.block}: {field}{self.message}"


class SpecError(VooduError, ValueError):
    """One or more problems with a postgres block; ``str()`` is one line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``): user input echoed in a
    message must not break it over several lines or drive the terminal."""
    return _UNPRINTABLE_RE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def type_name(value: object) -> str:
    """The HCL/JSON-level name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "map"
    return type(value).__name__


def as_int(value: object) -> int:
    """Accept an integer or a whole float (JSON numbers arrive as floats from Go); nothing else."""
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {type_name(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, float):
        raise ValueError(f"expected an integer, got {value!r}")
    raise ValueError(f"expected an integer, got {type_name(value)}")


_SECONDS_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)?")
_SECONDS_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}
_BYTES_RE = re.compile(r"(\d+)\s*(B|kB|KB|MB|GB)?")
_BYTES_UNIT = {"B": 1, "kB": 1024, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, None: 1}


def parse_seconds(value: object) -> float:
    """A duration: a number of seconds, or ``"500ms"`` / ``"5s"`` / ``"1m"``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    match = _SECONDS_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        shown = printable(value) if isinstance(value, str) else type_name(value)
        raise ValueError(f'expected a duration such as "5s", "500ms" or "1m", got {shown}')
    return float(match.group(1)) * _SECONDS_UNIT[match.group(2)]


def parse_bytes(value: object) -> int:
    """A size: a whole number of bytes, or ``"16MB"`` (Postgres' 1024-based units B, kB, MB, GB)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        n = as_int(value)
    else:
        match = _BYTES_RE.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            shown = printable(value) if isinstance(value, str) else type_name(value)
            raise ValueError(f'expected a size such as "16MB" or a number of bytes, got {shown}')
        n = int(match.group(1)) * _BYTES_UNIT[match.group(2)]
    if n < 0:
        raise ValueError(f"expected a size >= 0, got {n}")
    return n


def _as_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type_name(value)}")
    return value


_IDENTIFIER_DEFAULTS = {"database": DEFAULT_DATABASE, "user": DEFAULT_USER,
                        "replication_user": DEFAULT_REPLICATION_USER}


def _identifier(value: object, default: str) -> str:
    text = _as_str(value)
    if text == "":
        return default
    if not _IDENTIFIER_RE.fullmatch(text):
        raise ValueError(
            f'"{text}" is not a valid postgres identifier '
            "(1-63 chars: a letter or underscore, then letters, digits or underscores)"
        )
    return text


def _restricted(value: object, default: str, pattern: re.Pattern[str], what: str) -> str:
    """A string limited to ``pattern`` (it is word-split into initdb's argv); ``""`` means default."""
    text = _as_str(value)
    if text == "":
        return default
    if not pattern.fullmatch(text):
        raise ValueError(f'"{text}" is not {what}')
    return text


class PostgresSpec(BaseModel):
    """A validated postgres block. ``passthrough`` holds the statefulset keys, normalised."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    scope: str
    name: str
    image: str = DEFAULT_IMAGE
    replicas: int = 1
    database: str = DEFAULT_DATABASE
    user: str = DEFAULT_USER
    password: SecretStr = SecretStr("")
    port: int = DEFAULT_PORT
    initdb_locale: str = DEFAULT_LOCALE
    initdb_encoding: str = DEFAULT_ENCODING
    pg_config: dict[str, Scalar] = {}
    extensions: tuple[str, ...] = ()
    replication_user: str = DEFAULT_REPLICATION_USER
    synchronous: bool = False
    auto_failover: bool = False
    failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT  # seconds
    max_lag_on_failover: int = DEFAULT_MAX_LAG_ON_FAILOVER  # bytes
    passthrough: dict[str, Any] = {}

    @property
    def ref(self) -> Ref:
        return Ref(self.scope, self.name)

    # -- field validators: all run in "before" mode so the messages are ours ----------------

    @field_validator("image", mode="before")
    @classmethod
    def _image(cls, v: object) -> str:
        text = _as_str(v).strip()
        if any(c.isspace() or not c.isprintable() for c in text):
            raise ValueError(f'"{printable(text)}" is not an image reference '
                             "(no spaces or control characters)")
        # Go defect fixed: image = "" used to leak into the statefulset as an empty image.
        return text or DEFAULT_IMAGE

    @field_validator("replicas", mode="before")
    @classmethod
    def _replicas(cls, v: object) -> int:
        n = as_int(v)
        if n < 1:
            raise ValueError(
                f"replicas = {n} not allowed (must be >= 1; use 1 for a single primary, "
                ">= 2 for a replicated cluster)"
            )
        if n > MAX_REPLICAS:
            # each pod is a full copy of the data on this host: a typo must not start thousands
            raise ValueError(f"replicas = {n} not allowed (at most {MAX_REPLICAS} pods on one host)")
        return n

    @field_validator("database", "user", "replication_user", mode="before")
    @classmethod
    def _identifiers(cls, v: object, info: ValidationInfo) -> str:
        return _identifier(v, _IDENTIFIER_DEFAULTS[str(info.field_name)])

    @field_validator("password", mode="before")
    @classmethod
    def _password(cls, v: object) -> SecretStr:
        if isinstance(v, SecretStr):
            return v
        text = _as_str(v)
        if _CONTROL_RE.search(text):
            raise ValueError("must not contain control characters (newline, tab, …)")
        return SecretStr(text)

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, v: object) -> int:
        n = as_int(v)
        if not 1 <= n <= 65535:
            raise ValueError(f"port = {n} not allowed (must be 1..65535)")
        return n

    @field_validator("initdb_locale", mode="before")
    @classmethod
    def _locale(cls, v: object) -> str:
        return _restricted(v, DEFAULT_LOCALE, _LOCALE_RE, "a locale name (letters, digits and . _ @ - only)")

    @field_validator("initdb_encoding", mode="before")
    @classmethod
    def _encoding(cls, v: object) -> str:
        return _restricted(v, DEFAULT_ENCODING, _ENCODING_RE, "an encoding name (letters, digits, _ and - only)")

    @field_validator("pg_config", mode="before")
    @classmethod
    def _pg_config(cls, v: object) -> dict[str, Scalar]:
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            raise ValueError(f"expected a map, got {type_name(v)}")
        bad: list[str] = []
        out: dict[str, Scalar] = {}
        for key in sorted(v, key=str):
            value = v[key]
            if not isinstance(key, str) or not is_valid_pg_config_key(key):
                bad.append(
                    f'key "{printable(str(key))}" is not a valid postgres parameter name '
                    "(lowercase letters, digits and _, optionally one dotted prefix: anti-injection guard)"
                )
            elif not isinstance(value, bool | int | float | str):
                bad.append(f"{key}: value must be a string, number or bool, got {type_name(value)}")
            elif isinstance(value, float) and not math.isfinite(value):
                bad.append(f"{key}: value must be a finite number")
            elif isinstance(value, str) and _CONTROL_RE.search(value):
                bad.append(f"{key}: value must not contain control characters (newline, tab, …)")
            else:
                out[key] = value
        if bad:
            raise ValueError(_JOIN.join(bad))
        return out

    @field_validator("extensions", mode="before")
    @classmethod
    def _extensions(cls, v: object) -> tuple[str, ...]:
        if v is None:
            return ()
        if not isinstance(v, list | tuple):
            raise ValueError(f"expected a list, got {type_name(v)}")
        bad = []
        for i, item in enumerate(v):
            if not isinstance(item, str) or not _IDENTIFIER_RE.fullmatch(item):
                bad.append(f'extensions[{i}] = {item!r} is not a valid extension name')
        if bad:
            raise ValueError(_JOIN.join(bad))
        return tuple(v)

    @field_validator("synchronous", "auto_failover", mode="before")
    @classmethod
    def _flags(cls, v: object) -> bool:
        if not isinstance(v, bool):
            raise ValueError(f"expected true or false, got {type_name(v)}")
        return v

    @field_validator("failover_timeout", mode="before")
    @classmethod
    def _failover_timeout(cls, v: object) -> float:
        seconds = parse_seconds(v)
        if not MIN_FAILOVER_TIMEOUT <= seconds <= MAX_FAILOVER_TIMEOUT:
            # below a second one slow answer would fail over; above ten minutes it is not automatic
            raise ValueError(f"failover_timeout = {printable(str(v))} not allowed (must be between "
                             f"{MIN_FAILOVER_TIMEOUT:g}s and {MAX_FAILOVER_TIMEOUT / 60:g}m)")
        return seconds

    @field_validator("max_lag_on_failover", mode="before")
    @classmethod
    def _max_lag(cls, v: object) -> int:
        return parse_bytes(v)


# ---------------------------------------------------------------------------------------------
# passthrough (statefulset) keys


def _check_passthrough(key: str, value: object) -> tuple[object, list[str]]:
    """Normalise one passthrough key to its wire form; return (value, problems)."""
    if _has_nonfinite(value):
        return value, ["a number is out of range (numbers must be finite)"]
    check = _PASSTHROUGH_CHECKS.get(key)
    # keys without a checker (inits, build, depends_on, …) are passed through as they are
    return check(value) if check is not None else (value, [])


def _check_env(value: object) -> tuple[object, list[str]]:
    if not isinstance(value, Mapping):
        return value, [f"expected a map, got {type_name(value)}"]
    problems: list[str] = []
    env: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not _ENV_KEY_RE.fullmatch(k):
            problems.append(f'"{k}" is not a valid environment variable name')
        elif k in RESERVED_ENV:
            problems.append(
                f"{k} is managed by voodu-postgres and must not be set in env "
                "(it lives in the config bucket so promote can change it)"
            )
        elif v is None or isinstance(v, list | tuple | Mapping):
            problems.append(f"{k}: expected a string, number or bool, got {type_name(v)}")
        else:
            env[k] = _env_string(v)
    return env, problems


def _check_string_list(value: object) -> tuple[object, list[str]]:
    if not isinstance(value, list | tuple):
        return value, [f"expected a list, got {type_name(value)}"]
    problems: list[str] = []
    items: list[str] = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            problems.append(f"[{i}]: expected a string, got {type_name(item)}")
        else:
            items.append(_env_string(item))
    return items, problems


def _check_volumes(value: object) -> tuple[object, list[str]]:
    items, problems = _check_string_list(value)
    if isinstance(items, list):  # not when the value itself was refused
        problems += [f'"{v}" is not a bind mount (expected source:destination[:mode])'
                     for v in items if ":" not in v]
    return items, problems


def _check_string(value: object) -> tuple[object, list[str]]:
    if not isinstance(value, str):
        return value, [f"expected a string, got {type_name(value)}"]
    return value, []


def _check_volume_claims(value: object) -> tuple[object, list[str]]:
    if not isinstance(value, list | tuple):
        return value, [f"expected a list, got {type_name(value)}"]
    problems: list[str] = []
    claims = []
    for i, claim in enumerate(value):
        if (not isinstance(claim, Mapping) or not isinstance(claim.get("name"), str)
                or not isinstance(claim.get("mount_path"), str) or not claim["mount_path"].startswith("/")):
            problems.append(f"[{i}]: expected {{ name = \"…\", mount_path = \"/…\" }}")
        elif claim["name"] == "data" and claim["mount_path"] != "/var/lib/postgresql/data":
            problems.append(f"[{i}]: the data claim must stay at /var/lib/postgresql/data (PGDATA lives there)")
        else:
            claims.append(dict(claim))
    return claims, problems


def _check_probes(value: object) -> tuple[object, list[str]]:
    if not isinstance(value, Mapping):
        return value, [f"expected a probes {{ … }} block, got {type_name(value)}"]
    unknown = sorted(set(value) - {"liveness", "readiness", "startup"})
    if unknown:
        return value, [f"unknown probe {', '.join(unknown)} (expected liveness, readiness or startup)"]
    problems: list[str] = []
    for name, probe in value.items():
        problems += [f"{name}{p}" for p in _probe_problems(probe)]
    return dict(value), problems


def _check_ulimits(value: object) -> tuple[object, list[str]]:
    if not isinstance(value, Mapping):
        return value, [f'expected a map such as {{ nofile = "1024:2048" }}, got {type_name(value)}']
    problems = [f'{k}: expected "soft:hard" or an integer, got {type_name(v)}'
                for k, v in value.items() if isinstance(v, bool) or not isinstance(v, str | int)]
    return dict(value), problems


def _check_logs(value: object) -> tuple[object, list[str]]:
    if not isinstance(value, Mapping):
        return value, [f'expected a logs {{ max_size = "10m", max_files = 3 }} block, '
                       f"got {type_name(value)}"]
    problems: list[str] = []
    max_size, max_files = value.get("max_size"), value.get("max_files")
    if max_size is not None and (isinstance(max_size, bool)
                                 or not isinstance(max_size, str | int | float)):
        problems.append(f'max_size: expected a size such as "10m", got {type_name(max_size)}')
    if max_files is not None and not _whole(max_files, minimum=1):
        problems.append(f"max_files: expected a whole number >= 1, got {_shown(max_files)}")
    return dict(value), problems


def _has_nonfinite(value: object) -> bool:
    """A number HCL overflowed to infinity (``1e400``), or JSON's NaN, anywhere inside ``value``."""
    pending = [value]  # a loop, not recursion: any nesting depth the parser accepted is fine here
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, Mapping):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def _whole(value: object, *, minimum: int) -> bool:
    try:
        return as_int(value) >= minimum
    except ValueError:
        return False


def _shown(value: object) -> str:
    return printable(repr(value)) if isinstance(value, str | int | float) else type_name(value)


def _probe_problems(probe: object) -> list[str]:
    """The shape apply's Docker healthcheck needs; messages start with the part they are about."""
    if not isinstance(probe, Mapping):
        return [f": expected one {{ … }} block, got {type_name(probe)}"]
    problems = []
    command = probe["exec"].get("command", []) if isinstance(probe.get("exec"), Mapping) else []
    words = command if isinstance(command, list | tuple) else [None]
    bad_word = any(isinstance(a, bool) or not isinstance(a, str | int | float) for a in words)
    if "exec" in probe and (not isinstance(probe["exec"], Mapping) or bad_word):
        problems.append('.exec: expected { command = ["…", …] }')
    tcp = probe.get("tcp_socket")
    if "tcp_socket" in probe and (not isinstance(tcp, Mapping) or not _whole(tcp.get("port", 1), minimum=1)):
        problems.append(".tcp_socket: expected { port = <integer> }")
    for key in ("period", "timeout", "initial_delay"):
        duration = probe.get(key)
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, str | int | float)
                                     or (not isinstance(duration, str) and duration < 0)):
            problems.append(f'.{key}: expected a duration such as "10s", got {_shown(duration)}')
    for key in ("failure_threshold", "success_threshold"):
        if probe.get(key) is not None and not _whole(probe[key], minimum=1):
            problems.append(f".{key}: expected a whole number >= 1, got {_shown(probe[key])}")
    return problems


def _env_string(value: object) -> str:
    """Voodu converts env values (and list items) to strings; whole numbers lose their ``.0``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_resources(value: object) -> tuple[object, list[str]]:
    if not isinstance(value, Mapping):
        return value, [f"expected a resources {{ limits {{ … }} }} block, got {type_name(value)}"]
    problems: list[str] = []
    unknown = sorted(set(value) - {"limits"})
    if unknown:
        problems.append(f"unknown key {', '.join(unknown)} (only limits {{ cpu, memory }} is supported)")
    limits = value.get("limits", {})
    if not isinstance(limits, Mapping):
        return value, [*problems, f"limits: expected a block, got {type_name(limits)}"]
    out: dict[str, str] = {}
    for k, v in limits.items():
        if k not in ("cpu", "memory"):
            problems.append(f"limits.{k}: unknown limit (expected cpu or memory)")
            continue
        if v is None or v == "":
            continue  # empty means "no limit"
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            problems.append(f"limits.{k}: expected a string, got {type_name(v)}")
            continue
        text = _env_string(v)
        pattern = _CPU_RE if k == "cpu" else _MEMORY_RE
        if not pattern.fullmatch(text) or (k == "cpu" and _cpu_value(text) <= 0):
            hint = '"2", "1.5" or "500m"' if k == "cpu" else '"4Gi", "512Mi", "4G" or plain bytes'
            problems.append(f'limits.{k} = "{text}" is not a valid {k} quantity (e.g. {hint})')
            continue
        out[k] = text
    return {"limits": out}, problems


def _cpu_value(text: str) -> float:
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


_Check = Callable[[object], tuple[object, list[str]]]

#: How each passthrough key is checked and normalised; keys not listed pass through unchanged.
_PASSTHROUGH_CHECKS: dict[str, _Check] = {
    "env": _check_env,
    **dict.fromkeys(("env_from", "command", "extra_hosts", "cap_add", "docker_options", "networks"),
                    _check_string_list),
    "volumes": _check_volumes,
    **dict.fromkeys(("health_check", "restart", "network", "network_mode", "dockerfile", "workdir", "path"),
                    _check_string),
    "resources": _check_resources,
    "volume_claims": _check_volume_claims,
    "probes": _check_probes,
    "ulimits": _check_ulimits,
    "logs": _check_logs,
}


# ---------------------------------------------------------------------------------------------
# entry point


def load_spec(scope: str, name: str, raw: Mapping[str, Any] | None, *, source: str = "") -> PostgresSpec:
    """Validate one block's body (already converted to Voodu's JSON shape).

    Raises :class:`SpecError` listing every problem found.
    """
    block = str(Ref(scope, name))
    # (field, message) in the order reported: labels, then the body's keys, then the typed
    # fields, then the rules that span several fields
    found = _label_problems(scope, name)
    owned, passthrough = _split_body(dict(raw or {}), found)

    spec: PostgresSpec | None = None
    try:
        spec = PostgresSpec(scope=scope, name=name, passthrough=passthrough, **owned)
    except ValidationError as exc:
        found += _validation_problems(exc)

    if spec is not None:
        found += _cross_field_problems(spec)
    if found:
        raise SpecError([Problem(block, field, message, source) for field, message in found])
    assert spec is not None
    return spec


def _label_problems(scope: str, name: str) -> list[tuple[str, str]]:
    """The block's labels; an empty scope is allowed, an empty name is not."""
    found = []
    for part, what in ((scope, "scope"), (name, "name")):
        issue = label_problem(part, what) if part or what == "name" else None
        if issue:
            found.append(("", issue))
    return found


def _split_body(body: dict[str, Any], found: list[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sort the body's keys into the plugin's own fields and the (checked) passthrough keys,
    appending a problem to ``found`` for each key that is refused."""
    owned: dict[str, Any] = {}
    passthrough: dict[str, Any] = {}
    for key, value in body.items():
        if key in IGNORED_KEYS:
            continue
        if key in ("image", "replicas") or key in PLUGIN_OWNED:
            owned[key] = value
        elif key == "ports":
            found.append((
                "ports",
                "is managed by voodu-postgres (set `port`; pods bind it on 127.0.0.1, and the "
                "PG_EXPOSE_PUBLIC bucket flag publishes it on 0.0.0.0)",
            ))
        elif key in PASSTHROUGH_KEYS:
            normalised, errs = _check_passthrough(key, value)
            found += [(key, err) for err in errs]
            passthrough[key] = normalised
        else:
            found.append((key, _unknown_field(key)))
    return owned, passthrough


def _unknown_field(key: str) -> str:
    """The message for a key nobody understands, suggesting the closest known one (a typo)."""
    known = sorted({"image", "replicas", *PLUGIN_OWNED, *PASSTHROUGH_KEYS})
    close = difflib.get_close_matches(key, known, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f"unknown field{hint}"


def _validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Pydantic's errors as our (field, message) pairs; a field may carry several (``_JOIN``)."""
    found = []
    for detail in exc.errors():
        field = ".".join(str(part) for part in detail["loc"])
        message = str(detail["msg"]).removeprefix("Value error, ")
        found += [(field, part) for part in message.split(_JOIN)]
    return found


def _cross_field_problems(spec: PostgresSpec) -> list[tuple[str, str]]:
    """Rules that span several fields, checked once each field is valid on its own."""
    found = []
    if spec.replication_user == spec.user:
        found.append((
            "replication_user",
            f'must differ from user ("{spec.user}"): the replication role should carry only '
            "REPLICATION, never superuser powers",
        ))
    if spec.synchronous and spec.replicas < 2:
        found.append(("synchronous", "needs replicas >= 2 (a commit must wait for a standby)"))
    if spec.auto_failover and spec.replicas < 2:
        found.append(("auto_failover", "needs replicas >= 2 (there must be a standby to promote)"))
    if spec.auto_failover and spec.passthrough.get("restart") == "always":
        # Docker would restart a fenced (stopped) old primary when its daemon restarts: two writers
        found.append(("auto_failover", 'does not combine with restart = "always" (a fenced primary must stay '
                                        'stopped; use "unless-stopped", the default)'))
    return found


def defaults() -> dict[str, Any]:
    """The complete default spec, as printed by ``voodu-postgres defaults``."""
    return {
        "database": DEFAULT_DATABASE,
        "extensions": [],
        "image": DEFAULT_IMAGE,
        "initdb_encoding": DEFAULT_ENCODING,
        "initdb_locale": DEFAULT_LOCALE,
        "password": "<auto-generated: 64 hex chars on first apply>",
        "pg_config": {},
        "port": DEFAULT_PORT,
        "replicas": 1,
        "replication_user": DEFAULT_REPLICATION_USER,
        "synchronous": False,
        "auto_failover": False,
        "failover_timeout": f"{DEFAULT_FAILOVER_TIMEOUT:g}s",
        "max_lag_on_failover": f"{DEFAULT_MAX_LAG_ON_FAILOVER // (1024 * 1024)}MB",
        "user": DEFAULT_USER,
    }


#: Valid ``pg_config`` keys: a lowercase parameter name, optionally one dotted qualifier for
#: extension parameters (``pg_stat_statements.max``). ``\A``/``\Z`` rather than ``^``/``$`` so a
#: trailing newline can never sneak through ``re.match``.
PG_CONFIG_KEY_RE = re.compile(r"\A[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?\Z")


def is_valid_pg_config_key(key: object) -> bool:
    """True when ``key`` is a string usable as a postgresql.conf parameter name."""
    return isinstance(key, str) and PG_CONFIG_KEY_RE.fullmatch(key) is not None
