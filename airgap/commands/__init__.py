"""CLI command groups, registered by airgap.cli (thin: parse, call one library function, render)."""
