"""The SAM2 backend as a real process on a loopback port (CPU, tiny config, random weights).
Filled in by the backend work (issue 5)."""
