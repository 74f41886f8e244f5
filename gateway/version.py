"""The gateway's version, as installed (recorded in provenance and served in metadata)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agent-tool-gateway")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
