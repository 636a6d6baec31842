"""labelstack: the command-line front door (`labelstack.cli`)."""
