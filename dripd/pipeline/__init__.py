"""A contact's life on the store: import, compose, stage moves and tasks,
replies and commands, the digest, reports.
"""
