"""Cross-cutting utilities shared by the validator and (later) the miner."""
