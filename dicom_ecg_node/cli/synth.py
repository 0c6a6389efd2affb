"""ecg-node commands: synth (being written)."""
