"""The network edge: SMTP and IMAP sessions, OAuth2 tokens, Sent-folder copies, mailbox probes."""
