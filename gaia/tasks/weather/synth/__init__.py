"""Synthetic scoring runs: realistic smooth global fields, graded miners, manifests, expectations.

    from gaia.tasks.weather.synth import generate_run
    layout = generate_run(Path("/tmp/run"), seed=7)             # 1.5 deg, 16 miners
"""

from gaia.tasks.weather.synth.run import DEFAULT_INIT, generate_run

__all__ = ["DEFAULT_INIT", "generate_run"]
