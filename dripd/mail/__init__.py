"""The mail toolkit: reading hostile mail, bounces, auto-replies, classification, building MIME.

Pure: no database, no network.
"""
