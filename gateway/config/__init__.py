"""The configuration file: pydantic models of its YAML, one module per section
(`identity`, `policy`, `upstreams`, `audit`, the smaller ones in `sections`), the
document as a whole and its one loader (`loading`).

Every key is declared with its default. Unknown keys are errors (a typo must not
silently disable a security setting: `base.Model`). `load_config` turns every
validation problem into a `ConfigError` whose message names the key path and the
problem. Import from `gateway.config`; the modules are how it is laid out, not an API.
"""

from gateway.config.audit import AuditConfig, WitnessConfig
from gateway.config.base import NAME_PATTERN, Model
from gateway.config.identity import (
    ALLOWED_ALGORITHMS,
    DEFAULT_ALGORITHMS,
    IdentityConfig,
    IssuerConfig,
)
from gateway.config.loading import Config, describe_validation_error, load_config, parse_config
from gateway.config.policy import (
    BundleConfig,
    BundleKeyConfig,
    BundlePollingConfig,
    BundleSigningConfig,
    ConformanceConfig,
    DecisionQueueConfig,
    EmbeddedPolicyConfig,
    OpaPolicyConfig,
    PolicyConfig,
)
from gateway.config.sections import (
    ApprovalsConfig,
    ExecutorConfig,
    LimitsConfig,
    McpConfig,
    McpInputConfig,
    McpSessionsConfig,
    PinningConfig,
    RestartsConfig,
    ServerConfig,
    StorageConfig,
    TracingConfig,
)
from gateway.config.upstreams import (
    Credentials,
    HttpTool,
    HttpUpstream,
    McpHttpUpstream,
    McpStdioUpstream,
    MintedCredentials,
    NoCredentials,
    RiskConfig,
    StaticCredentials,
    Upstream,
    UpstreamBase,
)

__all__ = [
    "ALLOWED_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "NAME_PATTERN",
    "ApprovalsConfig",
    "AuditConfig",
    "BundleConfig",
    "BundleKeyConfig",
    "BundlePollingConfig",
    "BundleSigningConfig",
    "Config",
    "ConformanceConfig",
    "Credentials",
    "DecisionQueueConfig",
    "EmbeddedPolicyConfig",
    "ExecutorConfig",
    "HttpTool",
    "HttpUpstream",
    "IdentityConfig",
    "IssuerConfig",
    "LimitsConfig",
    "McpConfig",
    "McpHttpUpstream",
    "McpInputConfig",
    "McpSessionsConfig",
    "McpStdioUpstream",
    "MintedCredentials",
    "Model",
    "NoCredentials",
    "OpaPolicyConfig",
    "PinningConfig",
    "PolicyConfig",
    "RestartsConfig",
    "RiskConfig",
    "ServerConfig",
    "StaticCredentials",
    "StorageConfig",
    "TracingConfig",
    "Upstream",
    "UpstreamBase",
    "WitnessConfig",
    "describe_validation_error",
    "load_config",
    "parse_config",
]
