"""The files people write: config, campaigns, contact CSV, presets,
and the TOML and validation they go through. Pure: no database, no network.
"""
