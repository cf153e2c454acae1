"""Settings: environment variables ``SUPERVISOR_*`` over an optional TOML or JSON file.

Every setting has a type and, where it makes sense, an allowed range. A wrong value
raises :class:`ConfigError` whose message names the environment variable (or file
key), the value it got and what is allowed, so the person reading it can fix it
without opening the source. The API key is read from a file named by
``SUPERVISOR_API_KEY_FILE`` and kept out of :meth:`Settings.public_dict`.

The limits of a run and of a tool call are declared once, in :mod:`.limits`, and nested
here (``settings.run``, ``settings.tools``); their settings keep flat names
(``SUPERVISOR_MAX_STEPS``, ``max_steps`` in the file, ``--max-steps``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo

from sandbox_supervisor.limits import AgentLimits, Limits

ENV_PREFIX = "SUPERVISOR_"
CONFIG_FILE_VAR = "SUPERVISOR_CONFIG_FILE"

ToolMode = Literal["auto", "native", "json"]


class ConfigError(ValueError):
    """A setting is missing, unknown or outside its allowed range."""


def _limit_settings(group: str, limits: type) -> dict[str, tuple[str, str, FieldInfo]]:
    """The limits of the dataclass ``limits`` that are settings (their annotation carries
    a ``Field``): setting name (the field's alias, else its name) -> (``group``, field,
    the field's type, range and meaning)."""
    hints = get_type_hints(limits, include_extras=True)
    found: dict[str, tuple[str, str, FieldInfo]] = {}
    for item in dataclasses.fields(limits):
        hint = hints[item.name]
        if any(isinstance(meta, FieldInfo) for meta in get_args(hint)[1:]):
            info = FieldInfo.from_annotated_attribute(hint, item.default)
            found[info.alias or item.name] = (group, item.name, info)
    return found


_NESTED = {**_limit_settings("run", AgentLimits), **_limit_settings("tools", Limits)}
"""The settings that live in a nested limits object, by name."""


class Settings(BaseModel):
    """Validated settings of one supervisor process (see README for the table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_url: str = Field(
        "http://127.0.0.1:8080/v1",
        description="OpenAI-compatible base URL, ending in /v1",
        pattern=r"^https?://[^\s]+$",
    )
    model: str = Field("local", min_length=1, description="model name sent with each request")
    api_key_file: Path | None = Field(None, description="file holding the model API key")
    api_key: SecretStr | None = Field(None, exclude=True, description="read from api_key_file")
    workspace: Path = Field(Path("/workspace"), description="root that tools are confined to")
    log_dir: Path = Field(Path("/logs"), description="directory of trajectory files")
    tool_mode: ToolMode = Field("auto", description="native tool calls, JSON-schema mode or auto")

    max_reply_bytes: int = Field(
        8 * 1024 * 1024, ge=65_536, le=268_435_456, description="largest response body read"
    )
    temperature: float = Field(0.2, ge=0, le=2, description="sampling temperature")
    context_tokens: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="tokens of one request's context; 0: the server's n_ctx from /props",
    )
    run: AgentLimits = Field(default_factory=AgentLimits, description="what one run may spend")
    tools: Limits = Field(default_factory=Limits, description="what one tool call may do")

    request_timeout_s: float = Field(300.0, ge=0.1, le=3600, description="one model request")
    connect_timeout_s: float = Field(10.0, ge=0.1, le=600, description="TCP connect")
    max_retries: int = Field(5, ge=0, le=50, description="retries of one model request")
    backoff_base_s: float = Field(0.5, ge=0.0, le=60, description="first retry delay")
    backoff_max_s: float = Field(30.0, ge=0.0, le=600, description="longest retry delay")
    ready_timeout_s: float = Field(
        300.0, ge=0, le=3600, description="wait for /health 200 before a retry"
    )

    allow_protected_writes: bool = Field(
        False, description="allow writes into .git/, .devcontainer/, .vscode/"
    )
    fsync: bool = Field(True, description="fsync the trajectory after every record")

    tools_url: str | None = Field(
        None,
        description="base URL of the tools service; unset: tools run in this process",
        pattern=r"^https?://[^\s]+$",
    )
    tools_token_file: Path | None = Field(
        None, description="file holding the tools service's token (client and server)"
    )
    tools_token: SecretStr | None = Field(
        None, exclude=True, description="read from tools_token_file"
    )
    tools_ready_timeout_s: float = Field(
        60.0, ge=0, le=3600, description="wait for the tools service before giving up"
    )

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        """Move the limits given by their flat setting names into ``run`` and ``tools``."""
        if not isinstance(data, dict):
            return data
        flat = dict(data)
        for name, (group, _field, _info) in _NESTED.items():
            nested = flat.setdefault(group, {})
            if name in flat and isinstance(nested, dict):
                flat[group] = {**nested, name: flat.pop(name)}
        return flat

    def public_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-able data without any secret (for logs), each
        under its flat setting name."""
        data = self.model_dump(mode="json", exclude={"api_key", "tools_token", "run", "tools"})
        for name, (group, field, _info) in _NESTED.items():
            data[name] = getattr(getattr(self, group), field)
        data["api_key_set"] = self.api_key is not None
        data["tools_token_set"] = self.tools_token is not None
        return data

    def secrets(self) -> tuple[str, ...]:
        """The secret values this process holds (kept out of commands and outputs)."""
        held = (self.api_key, self.tools_token)
        return tuple(value.get_secret_value() for value in held if value is not None)

    def tool_limits(self) -> Limits:
        """What one tool call may do, with this process's secrets to keep out."""
        return dataclasses.replace(self.tools, secrets=self.secrets())

    def agent_limits(self, min_steps: int = 0, server_ctx: int | None = None) -> AgentLimits:
        """What one run may spend (at least ``min_steps`` steps, for a replay), within
        ``context_tokens`` or else the server's context ``server_ctx``."""
        return dataclasses.replace(
            self.run,
            max_steps=max(self.run.max_steps, min_steps),
            context_tokens=self.context_tokens or server_ctx,
        )

    @property
    def server_root(self) -> str:
        """Base URL of the server itself (``model_url`` without a trailing ``/v1``)."""
        url = self.model_url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url


_SECRET_FIELDS = {"api_key": "api_key_file", "tools_token": "tools_token_file"}
"""Secret settings, each read from the file that another setting names."""


_FIELDS: dict[str, FieldInfo] = {
    **{name: info for name, info in Settings.model_fields.items() if name not in ("run", "tools")},
    **{name: info for name, (_group, _field, info) in _NESTED.items()},
}
"""Every setting by its flat name, with its type, range and meaning."""


def _env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _allowed(field: str) -> str:
    """Describe the allowed values of ``field`` from its type and constraints."""
    info = _FIELDS[field]
    lo = hi = None
    for meta in info.metadata:
        lo = getattr(meta, "ge", lo)
        hi = getattr(meta, "le", hi)
    annotation = info.annotation
    if annotation is bool:
        return "true or false"
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(choice) for choice in get_args(annotation))
    kind = "an integer" if annotation is int else "a number" if annotation is float else "a value"
    if lo is not None and hi is not None:
        return f"{kind} from {lo} to {hi}"
    if field in ("model_url", "tools_url"):
        return "an http:// or https:// URL"
    return kind


def _source_name(field: str, sources: Mapping[str, str]) -> str:
    return sources.get(field, f"{field} (config file)")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{CONFIG_FILE_VAR}: cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{CONFIG_FILE_VAR}: {path} is not valid TOML/JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{CONFIG_FILE_VAR}: {path} must hold a table/object of settings")
    section = data.get("supervisor", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{CONFIG_FILE_VAR}: [supervisor] in {path} must be a table")
    return dict(section)


def _unknown(name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return ConfigError(f"unknown setting {name}{hint}")


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build :class:`Settings` from a config file (optional) and ``SUPERVISOR_*`` variables.

    Environment variables win over the file, and ``overrides`` (command-line options:
    setting name -> value, None meaning "not given") win over both; an error about an
    override names its option (``--max-steps``). ``SUPERVISOR_CONFIG_FILE`` names the
    file when ``config_file`` is not given. The key file, when set, must be readable.
    """
    env = os.environ if env is None else env
    fields = [f for f in _FIELDS if f not in _SECRET_FIELDS]
    values: dict[str, Any] = {}
    file_path = config_file or (Path(env[CONFIG_FILE_VAR]) if env.get(CONFIG_FILE_VAR) else None)
    if file_path is not None:
        for key, value in _read_file(file_path).items():
            if key not in fields:
                raise _unknown(f"{key} (in {file_path})", fields)
            values[key] = value
    sources: dict[str, str] = {}
    known_env = [_env_name(f) for f in fields] + [CONFIG_FILE_VAR]
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_FILE_VAR:
            continue
        if name not in known_env:
            raise _unknown(name, known_env)
        field = name[len(ENV_PREFIX) :].lower()
        values[field] = value
        sources[field] = name
    for field, value in (overrides or {}).items():
        if value is None:
            continue
        if field not in fields:
            raise _unknown(f"--{field.replace('_', '-')}", fields)
        values[field] = str(value) if isinstance(value, Path) else value
        sources[field] = f"--{field.replace('_', '-')}"
    for secret_field, file_field in _SECRET_FIELDS.items():
        key_file = values.get(file_field)
        if not key_file:
            continue
        source = _source_name(file_field, sources)
        try:
            key = Path(key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read key file {key_file}: {exc.strerror}") from exc
        if not key:
            raise ConfigError(f"{source}: {key_file} is empty")
        values[secret_field] = key
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = err["loc"]
            field = str(loc[-1] if loc and loc[0] in ("run", "tools") else loc[0] if loc else "?")
            if field not in _FIELDS:
                problems.append(err["msg"])
                continue
            got = values.get(field)
            problems.append(f"{_source_name(field, sources)}={got!r}: must be {_allowed(field)}")
        raise ConfigError("; ".join(problems)) from None
    if settings.backoff_max_s < settings.backoff_base_s:
        raise ConfigError(
            f"SUPERVISOR_BACKOFF_MAX_S={settings.backoff_max_s}: must be at least "
            f"SUPERVISOR_BACKOFF_BASE_S={settings.backoff_base_s}"
        )
    return settings
