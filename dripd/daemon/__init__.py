"""The running service: the planner, the senders, the inbox watchers,
supervision, reload, systemd.
"""
