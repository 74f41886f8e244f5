"""What every section of the configuration file is built on: a frozen model that
forbids unknown keys (a typo must not silently disable a security setting), and the
shape of names."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
)

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
