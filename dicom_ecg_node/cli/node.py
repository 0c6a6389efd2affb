"""ecg-node commands: node (being written)."""
