"""ecg-node commands: admin (being written)."""
