"""The one configuration object, built once from flags, environment and the TOML file.

    model.py     what a configuration is: `Config` and its tables (frozen values)
    settings.py  flags and MMSERVER_* variables -> `Config` (`load`), cross-checks between them
    file.py      the TOML file -> the tables of `Config` (servers, regions, auth, limits, ...)
    modes.py     one [modes.NAME] table: team shapes, attributes, roles, rules, latency
    values.py    the rules a single value must meet, one check and one wording each

Anything invalid raises ConfigError with one line meant for an operator; nothing is started
before the whole configuration is valid. Components receive values from Config and never read
os.environ themselves. The names below are the whole public face: the service, the admin tool
and the tests import them from here.
"""
from mmserver.config.file import parse_config_document
from mmserver.config.model import (
    DEFAULT_ADMIN_LISTEN,
    DEFAULT_DATA_DIR,
    DEMO_SERVER_TOKEN,
    Address,
    AuthConfig,
    Config,
    ConfigError,
    EventsConfig,
    LimitsConfig,
    ModeConfig,
    ServersConfig,
    WebhooksConfig,
)
from mmserver.config.settings import SETTINGS, env_name, load

__all__ = [
    "DEFAULT_ADMIN_LISTEN", "DEFAULT_DATA_DIR", "DEMO_SERVER_TOKEN", "SETTINGS", "Address", "AuthConfig", "Config", "ConfigError", "EventsConfig",
    "LimitsConfig", "ModeConfig", "ServersConfig", "WebhooksConfig", "env_name", "load",
    "parse_config_document",
]
