"""ecg-node commands: files (being written)."""
