"""The official synapseclient, unmodified, as the judge of the emulator's fidelity."""
