"""The recommender's configuration error, apart from the configuration loader so that the
pure modules that validate settings (``thresholds``) raise it without importing the loader
(which imports them)."""


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""
