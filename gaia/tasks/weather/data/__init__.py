"""Weather data: grids, regridding, stores, manifests, data checks, climatology and the loader.

Import the submodules you need (e.g. `gaia.tasks.weather.data.loader`); this package imports
nothing heavy by itself. `availability` and `errors` are stdlib-only.
"""
