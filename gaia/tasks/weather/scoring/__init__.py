"""Weather forecast scoring (spec sections 2-5): per-field metrics, level aggregation, day-1 and
ERA5 stage scores, run and window aggregation.

Modules: config (every threshold and weight), weights, skill (scalar edge rules), reference
(clear xarray scorer), kernels (fast numpy scorer) with twopass (its exact NaN-aware path), levels,
day1, era5, aggregate. Nothing is imported here, so importing a light module (config, aggregate)
does not pull numpy or xarray in.
"""
