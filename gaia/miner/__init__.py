"""Miner-side services (the plan migrates them after the validator side; nothing here yet)."""
