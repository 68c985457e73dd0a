"""The one error family of dripd; only the CLI turns these into a message and an exit code."""

from __future__ import annotations


class DripdError(Exception):
    """A problem a user can act on; its message is one clear line."""

    exit_code = 1


class ConfigError(DripdError):
    """The configuration file is missing or invalid."""


class CampaignError(DripdError):
    """A campaign file or one of its templates is invalid."""


class ContactError(DripdError):
    """A contact is unknown or a contact value is invalid."""


class StoreError(DripdError):
    """The database cannot be opened or is in an unexpected state."""


class UsageError(DripdError):
    """A command was given arguments it cannot act on."""

    exit_code = 2


class SignInError(DripdError):
    """A rep's OAuth2 sign-in is missing or no longer works: `dripd auth REP` fixes it."""


class SignInUnavailable(DripdError):
    """The OAuth2 provider could not be reached or failed for now: try again later."""
