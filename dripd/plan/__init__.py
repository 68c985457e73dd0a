"""The planning core: contacts, timing, windows, durations, the rep's command
language. Pure: no database, no network.
"""
